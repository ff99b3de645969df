"""One pretraining run on the training kernel: `TrainRun(cfg, tokens, out)` builds what pretraining supplies to
`loop.TrainLoop` (device, distributed set-up, model, optimizers, the token windows and their loss) and restores the
latest checkpoint in `out`; the kernel steps, guards, checkpoints and resumes. What stays here is pretraining's own:
the metric log (loss, lr, grad norm, tokens/s, MFU, memory), the val loss and bits per byte, the checkpoint sidecar
and the stage manifest (`finish`).
"""

from __future__ import annotations

import time
from pathlib import Path

from models.architectures.registry import ModelConfig
from tasks.core import progress
from tasks.core.artifacts import CheckpointRef, Entry, TokenSet, finish_stage, load_done
from tasks.core.bpb import bits_per_byte
from tasks.train.config import TrainConfig
from tasks.train.helpers import MetricLog, Tracking, evaluate_loss, max_rss_gib
from tasks.train.loop import StepLog, TrainLoop, load_resumed

DIVERGED = "lower train.lr, raise train.warmup_steps or use train.dtype=bfloat16/float32"


def model_config(cfg: TrainConfig, tokens: TokenSet, init_sidecar: dict) -> ModelConfig:
    """The architecture trained: the starting checkpoint's (continued pretraining), else train.model with the
    tokenizer's vocabulary where it says 0."""
    if cfg.init_from:
        mcfg = ModelConfig.model_validate(init_sidecar["model"])
    else:
        mcfg = cfg.model if cfg.model.vocab_size else cfg.model.model_copy(update={"vocab_size": tokens.vocab_size})
    if mcfg.vocab_size < tokens.vocab_size:
        raise ValueError(
            f"train.model.vocab_size={mcfg.vocab_size} < tokenizer vocab {tokens.vocab_size}; use 0 (auto)"
        )
    return mcfg


def load_start_weights(model, cfg: TrainConfig, resume: Path | None, sharded: bool) -> int:
    """Put the run's weights on `model` (fresh from its seeded init): a resumed run's (LoRA: the start plus its saved
    adapters), else train.init_from's; returns the base model's parameter count (before any adapter)."""
    from models.optimisation.lora import add_lora
    from models.weights import checkpoint as ckpt

    if cfg.init_from and (resume is None or cfg.lora is not None):  # LoRA resumes as base + saved adapters
        ckpt.load_weights(model, cfg.init_from)
    base_params = model.num_params()
    if cfg.lora is not None:
        add_lora(model, cfg.lora)
    load_resumed(model, resume, lora=cfg.lora is not None, sharded=sharded)
    return base_params


class DeviceWindows:
    """The token loader as the kernel's batch source: one `seq_len + 1` window per micro-batch, copied to the device
    once."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def next_batch(self):
        return self.loader.next_window().to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)


class TrainRun:
    def __init__(self, cfg: TrainConfig, tokens: TokenSet, out: Path, tracking: Tracking = None):
        import torch
        from tqdm import tqdm

        from models.architectures.registry import build_model
        from models.distributed import parallelize, process_group as distributed
        from models.hardware import devices, flops
        from models.optimisation.muon import build_optimizers
        from models.text.tokenizer import Tokenizer
        from models.weights import checkpoint as ckpt
        from tasks.core.tokens import TokenLoader

        self.cfg, self.tokens, self.out, self.t0 = cfg, tokens, out, time.time()
        device = self.device = devices.resolve_device(cfg.device)
        info = self.info = distributed.init_distributed(device)
        devices.setup_device(device)
        dtype = devices.resolve_dtype(cfg.dtype, device)
        sharded = parallelize.is_sharded(info, cfg.distributed)
        cfg.check_placement(sharded, float16=dtype == torch.float16)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        out.mkdir(parents=True, exist_ok=True)
        if info.is_main:
            ckpt.clear_staging(out)  # half-written checkpoints of a killed run
        distributed.barrier(info)
        self.tokenizer_file = tokens.dir / tokens.tokenizer_file
        self.tokenizer = Tokenizer.load(self.tokenizer_file)
        self.init_sidecar = ckpt.read_sidecar(cfg.init_from) if cfg.init_from else {}
        if self.init_sidecar and self.init_sidecar["tokenizer"]["sha256"] != self.tokenizer.sha256:
            raise ValueError(
                f"train.init_from={cfg.init_from} was trained with another tokenizer than {self.tokenizer_file}"
            )
        self.mcfg = model_config(cfg, tokens, self.init_sidecar)

        torch.manual_seed(cfg.seed)  # same seed on every rank: identical initial weights without a broadcast
        model = self.model = build_model(self.mcfg)
        resume = ckpt.latest_checkpoint(out)
        self.base_params = load_start_weights(model, cfg, resume, sharded)
        model.to(device)
        wrapped = self.wrapped = parallelize.parallelize(
            model, info, device, compile=cfg.compile, activation_checkpointing=cfg.activation_checkpointing,
            strategy=cfg.distributed, dtype=dtype,
        )
        self.T, self.B = cfg.seq_len or self.mcfg.seq_len, cfg.batch_size
        self.micro_tokens = self.B * self.T * info.world_size
        self.accum = max(1, round(cfg.tokens_per_step / self.micro_tokens)) if cfg.tokens_per_step else 1
        self.loader = TokenLoader(
            [tokens.dir / f for f in tokens.train_files], self.B, self.T, info.rank, info.world_size,
            device.type == "cuda", shuffle_seed=cfg.seed if cfg.shuffle else None,
        )
        self.amp_ctx = devices.autocast(device, dtype)
        self.loop = TrainLoop(
            model, build_optimizers(model, cfg.optimizer_spec(fused=device.type == "cuda")), cfg.lr_schedule(),
            DeviceWindows(self.loader, device), self.window_loss, out, device=device, grad_clip=cfg.grad_clip,
            name="train", advice=DIVERGED, info=info, accum=self.accum, float16=dtype == torch.float16,
            sync_grads=lambda last: parallelize.grad_sync(model, wrapped, last),
            momentum_warmup=cfg.muon_momentum_warmup, log_every=cfg.log_every, sharded=sharded,
            lora=cfg.lora is not None,
        )
        if resume is not None:
            self.loop.restore(resume)

        self.val_files = [tokens.dir / f for f in tokens.val_files]
        self.peak = flops.peak_flops(device, dtype)
        self.flops_per_token = (
            model.flops_per_token(self.T) if hasattr(model, "flops_per_token") else 6.0 * model.num_params()
        )
        self.log = MetricLog(tracking, info.is_main, out / "log.jsonl")
        self.log.tag(world_size=info.world_size, distributed=cfg.distributed if info.world_size > 1 else "none")
        self.bar = tqdm(total=cfg.max_steps, initial=self.loop.state.step,
                        disable=None if (cfg.progress and info.is_main) else True, desc="train")
        self.val_loss, self.peak_mem = float("nan"), 0.0
        self.window_t, self.window_tokens = time.perf_counter(), 0  # tokens/s over the steps since the last log

    def window_loss(self, window):
        """Pretraining's loss: next-token cross-entropy over a window (x = its first T tokens, y = the next)."""
        x, y = self.loader.split_window(window)
        with self.amp_ctx:
            _, loss = self.wrapped(x, y)
        return loss, self.micro_tokens

    def fit(self) -> None:
        """Train to max_steps / max_seconds, evaluating and checkpointing on the way, then take the final val loss."""
        cfg = self.cfg
        self.loop.fit(on_step=self.on_step, evaluate=self.evaluate, eval_every=cfg.eval_every, save=self.save,
                      checkpoint_every=cfg.checkpoint_every)
        self.bar.close()
        self.val_loss = self.measure_val()

    def on_step(self, log: StepLog | None) -> None:
        self.window_tokens += self.micro_tokens * self.accum
        if log is not None:
            self._log_step(log)
        self.bar.update(1)

    def mfu(self, tokens_per_s: float) -> float | None:
        """Model FLOPs utilisation at `tokens_per_s` over every rank; None on CPU or an unknown GPU."""
        return self.flops_per_token * tokens_per_s / (self.peak * self.info.world_size) if self.peak else None

    def _log_step(self, log: StepLog) -> None:
        from models.hardware import devices

        cfg, state = self.cfg, self.loop.state
        tokens_per_s = self.window_tokens / max(time.perf_counter() - self.window_t, 1e-9)
        self.window_t, self.window_tokens = time.perf_counter(), 0
        mfu = self.mfu(tokens_per_s)
        memory = devices.peak_memory_gib(self.device)
        self.peak_mem = max(self.peak_mem, memory or 0.0)
        mem = {"train__peak_mem_gib": memory} if memory is not None else {"train__max_rss_gib": max_rss_gib()}
        self.log.add(
            log.step,
            train__loss=log.loss,
            train__lr=cfg.lr * log.lr_multiplier,
            train__grad_norm=log.grad_norm,
            train__tokens_per_s=tokens_per_s,
            **({"train__mfu": mfu} if mfu is not None else {}),  # no MFU rather than a wrong one
            train__seconds=state.train_seconds,
            **mem,
        )
        self.bar.set_postfix(loss=f"{log.loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
        if cfg.progress and self.info.is_main:  # the console's live line (tasks.core.progress)
            left = (cfg.max_steps - log.step) * state.train_seconds / max(log.step - self.loop.start_step, 1)
            progress.update("train", done=log.step, total=cfg.max_steps, unit="steps",
                            note=f"loss {log.loss:.3f} · {tokens_per_s:,.0f} tok/s",
                            eta_s=min(left, cfg.max_seconds - state.train_seconds) if cfg.max_seconds else left)

    def bpb(self, loss: float) -> float:
        """The val split's bits per byte at this mean loss (the eval batches are assumed to have the whole split's
        bytes per token)."""
        return bits_per_byte(loss * self.tokens.n_val_tokens, self.tokens.val_bytes)

    def measure_val(self) -> float:
        """Mean val loss over `eval_batches`."""
        return evaluate_loss(self.wrapped, self.val_files, self.B, self.T, self.cfg.eval_batches, self.device,
                             self.amp_ctx)

    def evaluate(self) -> float:
        """Val loss over `eval_batches`, logged with its bits per byte."""
        self.val_loss = self.measure_val()
        self.log.add(self.loop.state.step, val__loss=self.val_loss, val__bpb=self.bpb(self.val_loss),
                     train__seconds=self.loop.state.train_seconds)
        self.log.flush()
        return self.val_loss

    def sidecar(self) -> dict:
        """What the checkpoint says of itself beside its weights (`models.weights.checkpoint` adds step, commit,
        time)."""
        from models.optimisation.lora import trainable_params
        from models.weights import checkpoint as ckpt

        cfg, state = self.cfg, self.loop.state
        return {
            "model": self.mcfg.model_dump(mode="json"),
            "train": cfg.model_dump(mode="json"),
            "tokens_seen": state.tokens_seen,
            "n_params": self.base_params,
            "trainable_params": trainable_params(self.model),
            "arch": self.mcfg.arch,
            "world_size": self.info.world_size,
            "tokenizer": {"sha256": self.tokenizer.sha256, "file": ckpt.TOKENIZER, "source": str(self.tokenizer_file)},
            "data": {"manifest_sha256": self.tokens.manifest_sha256, "path": self.tokens.path},
            "metrics": {"train_loss": state.loss, "val_loss": self.val_loss},
            **({"source": self.init_sidecar["source"]} if "source" in self.init_sidecar else {}),  # an imported base's
        }

    def save(self) -> Path | None:
        """A checkpoint of this step (the kernel's, with pretraining's sidecar)."""
        return self.loop.save(self.sidecar(), self.tokenizer_file, self.cfg.keep_last)

    def close(self) -> None:
        self.bar.close()
        self.log.flush()  # the curve up to a failure is worth keeping

    def finish(self, entry: Entry) -> CheckpointRef:
        """Log the final val loss, save the last step unless on disk already, write the stage manifest (recording the
        code of `entry`, the stage's `run_…` function)."""
        from models.distributed import process_group as distributed
        from models.weights import checkpoint as ckpt

        info, state = self.info, self.loop.state
        val_bpb = self.bpb(self.val_loss)
        self.log.add(state.step, val__loss=self.val_loss, val__bpb=val_bpb, train__seconds=state.train_seconds)
        self.log.flush()
        if self.loop.saved_step != state.step:
            self.save()
        final = ckpt.step_dir(self.out, state.step)
        tokens_per_s = state.tokens_seen / state.train_seconds if state.train_seconds else 0.0  # resumes included
        stats = {
            "steps": state.step,
            "resumed_from_step": self.loop.start_step,
            "world_size": info.world_size,
            "grad_accum": self.accum,
            "params": self.base_params,
            "tokens_seen": state.tokens_seen,
            "train_seconds": round(state.train_seconds, 3),
            "final_train_loss": state.loss,
            "val_loss": self.val_loss,
            "val_bpb_estimate": val_bpb,
            "tokens_per_s": round(tokens_per_s, 1),
            "flops_per_token": self.flops_per_token,
            "mfu": self.mfu(tokens_per_s),
            **({"peak_mem_gib": round(self.peak_mem, 3)} if self.device.type == "cuda" else {}),
        }
        ref = CheckpointRef.at(final, step=state.step, n_params=self.base_params, tokens_seen=state.tokens_seen,
                               train_seconds=state.train_seconds, final_train_loss=state.loss)
        if info.is_main:
            ref = finish_stage(self.out, ref, config=self.cfg, entry=entry, stats=stats,
                               files=ckpt.checkpoint_files(final), started=self.t0)
        distributed.barrier(info)
        return ref if info.is_main else load_done(self.out, CheckpointRef)
