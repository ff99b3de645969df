"""The train stage's config (`TrainConfig`, what the CLI, the Prefect form and MLflow params show), the checks of
its fields against each other and against the run's placement, and what it asks of the training kernel: the lr
schedule (`lr_schedule`, `lr_multiplier`) and the optimizers (`optimizer_spec`); shared by the trainer
(`state.TrainRun`) and the sweep's trials."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.architectures.registry import ModelConfig
from models.optimisation.lora import LoraConfig
from tasks.train.schedule import Schedule

if TYPE_CHECKING:
    from models.optimisation.muon import OptimizerSpec


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Architecture and sizes.")
    max_steps: int = Field(default=300, ge=1, description="Optimizer steps; the lr schedule spans them.")
    max_seconds: float | None = Field(
        default=None, description="Stop after this many training seconds (schedule decays by time too)."
    )
    batch_size: int = Field(default=16, ge=1, description="Sequences per micro-batch per rank.")
    tokens_per_step: int = Field(
        default=0, ge=0, description="Tokens per optimizer step (gradient accumulation); 0 = one micro-batch per rank."
    )
    optimizer: Literal["adamw", "muon"] = Field(
        default="adamw", description="AdamW, or Muon for block matrices + AdamW for the rest."
    )
    lr: float = Field(default=3e-3, gt=0, description="Peak AdamW learning rate.")
    muon_lr: float = Field(default=0.02, gt=0, description="Peak Muon learning rate (optimizer=muon).")
    embed_lr: float = Field(
        default=0.0, ge=0, description="Peak AdamW lr of an untied input embedding; 0 = lr (nanochat: 0.3 at width "
        "768, scaled by (768 / n_embd)^0.5).",
    )
    head_lr: float = Field(
        default=0.0, ge=0, description="Peak AdamW lr of an untied output head; 0 = lr (nanochat: 0.008 at width 768, "
        "scaled like embed_lr).",
    )
    muon_momentum_warmup: int = Field(
        default=0, ge=0, description="Steps over which Muon's momentum rises from 0.85 to 0.95; 0 = 0.95 throughout."
    )
    cautious_weight_decay: bool = Field(
        default=False, description="Muon decays only weights its update shrinks too (nanochat's cautious decay)."
    )
    muon_variant: Literal["muon", "normuon"] = Field(
        default="muon", description="Muon's orthogonalisation: the quintic Newton-Schulz, or nanochat's Polar Express "
        "with NorMuon's per-neuron step sizes.",
    )
    scalar_lr: float = Field(
        default=0.0, ge=0, description="AdamW lr of the x0 scalars (model.residual_scalars; the residual scalars get "
        "1/100 of it); 0 = lr (nanochat: 0.5).",
    )
    betas: tuple[float, float] = Field(default=(0.9, 0.95), description="AdamW betas.")
    weight_decay: float = Field(default=0.1, ge=0, description="Decoupled weight decay on matrices.")
    embed_weight_decay: float | None = Field(
        default=None, ge=0, description="Weight decay of an untied embedding, head and value embeddings, which have "
        "their own lrs; None = weight_decay (nanochat: 0.001-0.01).",
    )
    warmup_steps: int = Field(default=30, ge=0, description="Linear warmup steps.")
    schedule: Literal["cosine", "wsd", "constant"] = Field(
        default="cosine", description="Decay after warmup: cosine, warmup-stable-decay, or none."
    )
    decay_fraction: float = Field(default=0.2, gt=0, le=1, description="wsd: share of the run spent decaying.")
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="Final lr as a fraction of the peak.")
    grad_clip: float = Field(default=1.0, ge=0, description="Clip the global gradient norm to this (0 = off).")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Autocast dtype; auto = bf16 on CUDA (fp16 + gradient scaler where bf16 is missing), fp32 on CPU.",
    )
    compile: bool = Field(default=False, description="torch.compile the model.")
    activation_checkpointing: bool = Field(
        default=False, description="Recompute block activations in backward to save memory."
    )
    distributed: Literal["ddp", "fsdp"] = Field(
        default="ddp", description="Strategy when launched with torchrun on several ranks."
    )
    checkpoint_every: int = Field(
        default=100, ge=0, description="Save a checkpoint every N steps (and always at the end); 0 = end only."
    )
    keep_last: int = Field(default=2, ge=1, description="Checkpoints kept on disk.")
    eval_every: int = Field(default=100, ge=0, description="Val loss every N steps (and at the end); 0 = end only.")
    eval_batches: int = Field(default=20, ge=1, description="Val batches per evaluation.")
    log_every: int = Field(default=10, ge=1, description="Log train metrics every N steps.")
    seed: int = Field(default=1337, description="Seed of init, dropout and sampling.")
    shuffle: bool = Field(default=False, description="Visit the training windows in an order drawn from `seed` "
                          "(anew each epoch) instead of in sequence: a run shorter than an epoch then samples the "
                          "whole data set, and the seed varies the data as well as the init (data ablations use it).")
    threads: int = Field(default=0, ge=0, description="torch CPU threads; 0 = torch's default.")
    init_from: str | None = Field(
        default=None,
        description="Checkpoint dir whose weights start this run (continued pretraining, e.g. an imported base "
        "model); its architecture replaces train.model's.",
    )
    seq_len: int = Field(default=0, ge=0, description="Training window in tokens; 0 = the model's seq_len (an "
                         "imported model's context, e.g. 8192, is kept for serving while it trains on shorter rows).")
    lora: LoraConfig | None = Field(
        default=None, description="Train LoRA adapters (peft) on a frozen init_from model instead of every weight; "
        "checkpoints hold the merged weights.",
    )
    progress: bool = Field(default=True, description="Show a progress bar on a terminal.")
    nproc_per_node: int = Field(
        default=0,
        ge=0,
        description="Training processes the train task starts with torchrun; 0 = one per visible GPU (1 on CPU).",
    )

    def check_placement(self, sharded: bool, float16: bool) -> None:
        """Refuse what the run cannot do, checked when it starts: FSDP shards only on several ranks (known once the
        ranks are up), and a pipeline with `base` fills `init_from` only at run time, so a config with LoRA and no
        `init_from` is valid until then (the smol_cpu preset)."""
        if self.lora is not None and self.init_from is None:
            raise ValueError("train.lora adapts a pretrained model: set train.init_from (an imported base or "
                             "checkpoint)")
        if self.optimizer == "muon" and sharded:
            raise ValueError("train.optimizer=muon needs whole matrices; use train.distributed=ddp")
        if float16 and sharded:
            raise ValueError("train.dtype=float16 needs a gradient scaler FSDP2 does not have; use bfloat16 or ddp")
        if self.lora is not None and sharded:
            raise ValueError("train.lora adapts a pretrained model on one process or DDP: set "
                             "train.distributed=ddp")

    def lr_schedule(self) -> Schedule:
        return Schedule(max_steps=self.max_steps, warmup_steps=self.warmup_steps, shape=self.schedule,
                        floor=self.min_lr_ratio, decay_fraction=self.decay_fraction, max_seconds=self.max_seconds)

    def optimizer_spec(self, fused: bool) -> OptimizerSpec:
        from models.optimisation.muon import OptimizerSpec

        return OptimizerSpec(
            kind=self.optimizer, lr=self.lr, weight_decay=self.weight_decay, betas=self.betas, muon_lr=self.muon_lr,
            fused=fused, embed_lr=self.embed_lr, head_lr=self.head_lr, cautious=self.cautious_weight_decay,
            embed_weight_decay=self.embed_weight_decay, scalar_lr=self.scalar_lr, muon_variant=self.muon_variant,
        )


def lr_multiplier(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """Schedule factor for `step` (0-based); with a time budget the decay follows whichever runs out first."""
    return cfg.lr_schedule().multiplier(step, elapsed)
