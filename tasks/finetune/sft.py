"""SFT stage: fine-tune a pretrained checkpoint for chat on the conversations of `tasks.finetune.sft_data`.

Each conversation is rendered with the chat template (`models.text.chat.encode_chat`) and trained on with the loss on
assistant tokens only: a target is the next token where the assistant mask is 1 (the assistant's content and its
closing `<|end|>`) and -1 elsewhere, which `GPT.forward` ignores. Conversations are packed whole into rows of
`seq_len + 1` tokens (first-fit decreasing, padding the rest), so no turn loses its context to a row boundary; one
longer than a row is cut. As in pretraining, conversations sharing a row are separated by `<|bos|>`.

SFT supplies its data (`RowBatches`) and loss to the training kernel (`tasks.train.loop.TrainLoop`: AdamW from
`models.optimisation.muon.build_optimizers`, its own `Schedule` with floor `min_lr_ratio`, clipping, the NaN/inf guard,
checkpoints and exact resume after a kill). The result is a `CheckpointRef`, so evaluate and register take it unchanged.
`resolve_base` turns
what the user names (a registry alias `models:/name@alias`, a train stage dir or a checkpoint dir) into the base
checkpoint and, where known, the token data it was evaluated on and the curated shards it was trained from.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Literal

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from models.optimisation.lora import LoraConfig
from tasks.core import progress
from tasks.core.artifacts import CheckpointRef, ShardSet, TokenSet, file_sha256, finish_stage, load_done, stage_dir
from tasks.core.tracking import TrackingConfig
from tasks.finetune.sft_data import VAL, ConversationSet, load_conversations
from tasks.finetune.start import start_from


class SFTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_steps: int = Field(default=150, ge=1, description="Optimizer steps (epochs over the packed rows repeat).")
    batch_size: int = Field(default=8, ge=1, description="Packed rows per step.")
    seq_len: int = Field(default=0, ge=0, description="Row length in tokens; 0 = the base model's context length.")
    lr: float = Field(default=1e-3, gt=0, description="Peak AdamW learning rate.")
    warmup_steps: int = Field(default=10, ge=0, description="Linear warmup steps.")
    schedule: Literal["cosine", "wsd", "constant"] = Field(default="cosine", description="Decay after warmup.")
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="Final lr as a fraction of the peak.")
    weight_decay: float = Field(default=0.0, ge=0, description="Decoupled weight decay on matrices.")
    betas: tuple[float, float] = Field(default=(0.9, 0.95), description="AdamW betas.")
    grad_clip: float = Field(default=1.0, ge=0, description="Clip the global gradient norm (0 = off).")
    checkpoint_every: int = Field(default=0, ge=0, description="Save every N steps, so a killed run resumes (0 = end only).")
    eval_every: int = Field(default=50, ge=0, description="Val loss on held-out conversations every N steps (0 = end only).")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(default="auto", description="Autocast dtype.")
    seed: int = Field(default=1337, description="Seed of the row order and dropout.")
    threads: int = Field(default=0, ge=0, description="torch CPU threads; 0 = torch's default.")
    lora: LoraConfig | None = Field(
        default=None, description="Train LoRA adapters (peft) on the frozen base instead of every weight; the "
        "checkpoint holds the merged weights.",
    )


class SFTBase(BaseModel):
    """The checkpoint fine-tuning starts from, with the stage outputs it came from where they are known."""

    source: str = Field(description="What the user named: models:/name@alias or a directory.")
    model_uri: str | None = Field(default=None, description="models:/name/version the alias resolved to, if any.")
    checkpoint: CheckpointRef
    tokens: TokenSet | None = Field(default=None, description="Token data of the base (its val split is the eval set).")
    shards: ShardSet | None = Field(default=None, description="Curated shards the base was trained from.")


def checkpoint_from_dir(path: Path) -> CheckpointRef:
    """A train/SFT stage dir (with manifest) or one `step_*` checkpoint dir as a CheckpointRef."""
    from models.weights import checkpoint as ckpt

    done = load_done(path, CheckpointRef)
    if done is not None:
        return done
    ckpt.read_sidecar(path)  # raises naming the path when it is no checkpoint
    # No manifest to hash: the sidecar and weights identify the checkpoint for stage-directory keys.
    digest = file_sha256(path / ckpt.SIDECAR)[:32] + file_sha256(path / ckpt.WEIGHTS)[:32]
    return CheckpointRef.of_sidecar(path, digest)


def resolve_base(source: str, tracking: TrackingConfig, tokens_dir: str | None = None) -> SFTBase:
    """`models:/name@alias` (through the version's MLflow run, `tasks.registry.lineage`) or a directory → SFTBase.

    `tokens_dir` (a finished tokenize stage dir) overrides the token data found through the base.
    """
    from models.weights import checkpoint as ckpt
    from tasks.core.tracking import client
    from tasks.registry.lineage import lineage, stage_path

    if source.startswith("models:/"):
        name, _, alias = source.removeprefix("models:/").partition("@")
        if not alias:
            raise ValueError(f"finetune base {source!r}: name a registry alias, e.g. models:/lmforge@champion")
        found = lineage(tracking, name, alias)
        if found is None:
            raise ValueError(f"no version of registered model {name!r} holds alias {alias!r} at {tracking.uri()}")
        if found.checkpoint is None:
            raise FileNotFoundError(f"{source}: the training output of run {found.run_id} is no longer on disk; "
                                    "export the model (lmforge export) and fine-tune from that checkpoint dir")
        shards_dir = stage_path(client(tracking).get_run(found.run_id).data.tags, "shard")
        shards = load_done(shards_dir, ShardSet) if shards_dir is not None and shards_dir.exists() else None
        checkpoint, tokens = found.checkpoint, found.tokens
        model_uri = f"models:/{name}/{found.version}"
    else:
        path = Path(source)
        if not path.is_dir():
            raise FileNotFoundError(f"finetune base {source}: not a directory and not a models:/name@alias URI")
        checkpoint, shards, model_uri = checkpoint_from_dir(path), None, None
        data_dir = ckpt.read_sidecar(checkpoint.dir / checkpoint.checkpoint).get("data", {}).get("path")
        tokens = load_done(Path(data_dir), TokenSet) if data_dir and Path(data_dir).is_dir() else None
    if tokens_dir:
        tokens = load_done(Path(tokens_dir), TokenSet)
        if tokens is None:
            raise FileNotFoundError(f"finetune tokens_dir {tokens_dir} holds no finished tokenize stage (manifest.json)")
    return SFTBase(source=source, model_uri=model_uri, checkpoint=checkpoint, tokens=tokens, shards=shards)


def pack(tokenizer, conversations: list[list[dict[str, str]]], seq_len: int):
    """(x, y, stats): rows of `seq_len` inputs and targets, y = next token on assistant tokens, -1 elsewhere."""
    import torch

    from models.text.chat import encode_chat

    width = seq_len + 1
    stats = {"conversations": len(conversations), "truncated": 0, "dropped_no_target": 0}
    items = []
    for messages in conversations:
        ids, mask = encode_chat(tokenizer, messages, add_generation_prompt=False)
        if len(ids) > width:
            ids, mask, stats["truncated"] = ids[:width], mask[:width], stats["truncated"] + 1
        if not any(mask[1:]):  # nothing left to learn from (the assistant turn was cut off)
            stats["dropped_no_target"] += 1
            continue
        items.append((ids, mask))
    rows: list[tuple[list[int], list[int]]] = []
    for ids, mask in sorted(items, key=lambda item: -len(item[0])):  # first-fit decreasing
        row = next((r for r in rows if len(r[0]) + len(ids) <= width), None)
        if row is None:
            rows.append((list(ids), list(mask)))
        else:
            row[0].extend(ids)
            row[1].extend(mask)
    x = torch.full((len(rows), seq_len), tokenizer.pad_id, dtype=torch.long)
    y = torch.full((len(rows), seq_len), -1, dtype=torch.long)
    for i, (ids, mask) in enumerate(rows):
        n = len(ids) - 1
        x[i, :n] = torch.tensor(ids[:-1])
        y[i, :n] = torch.tensor([t if m else -1 for t, m in zip(ids[1:], mask[1:])])
    real = sum(len(ids) for ids, _ in rows)
    stats |= {"rows": len(rows), "tokens": real, "assistant_tokens": int((y >= 0).sum()),
              "packing_efficiency": real / max(1, len(rows) * width)}
    return x, y, stats


def masked_loss(model, x, y, batch_size: int, device, amp) -> float:
    """Mean cross-entropy over the assistant targets of (x, y)."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            with amp:
                _, loss = model(xb, yb)
            n = int((yb >= 0).sum())
            total, count = total + float(loss) * n, count + n
    model.train()
    return total / count if count else float("nan")


class RowBatches:
    """SFT's batch source: `batch_size` packed rows per step, drawn from a fresh seeded permutation per epoch; a
    batch is a function of its index, so the position a resumed run continues from is that index."""

    def __init__(self, x, y, batch_size: int, seed: int, device):
        self.x, self.y, self.batch_size, self.seed, self.device, self.index = x, y, batch_size, seed, device, 0

    def rows(self, index: int) -> list[int]:
        import torch

        first, rows = index * self.batch_size, []
        while len(rows) < self.batch_size:
            epoch, offset = divmod(first + len(rows), len(self.x))
            order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed + epoch))
            rows += order[offset : offset + self.batch_size - len(rows)].tolist()
        return rows

    def next_batch(self):
        rows = self.rows(self.index)
        self.index += 1
        return self.x[rows].to(self.device), self.y[rows].to(self.device)

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.index = state["index"]


def run_sft(cfg: SFTConfig, base: CheckpointRef, data: ConversationSet, out: Path) -> CheckpointRef:
    import torch

    from models.optimisation.lora import add_lora
    from models.optimisation.muon import OptimizerSpec, build_optimizers
    from models.weights import checkpoint as ckpt
    from tasks.train.loop import TrainLoop, load_resumed
    from tasks.train.schedule import Schedule

    t0 = time.time()
    start = start_from(cfg, base, out)
    device, amp, model, tokenizer = start.device, start.amp, start.model, start.tokenizer
    ckpt.clear_staging(out)  # half-written checkpoints of a killed run
    resume = ckpt.latest_checkpoint(out)  # a killed run continues from its last checkpoint
    torch.manual_seed(cfg.seed)  # adapter init and dropout; a resumed run then restores the generator's state
    if cfg.lora is not None:  # a resumed LoRA run is the base plus its saved adapters
        add_lora(model, cfg.lora)
    load_resumed(model, resume, lora=cfg.lora is not None)
    model.to(device).train()
    seq_len = min(cfg.seq_len or model.config.seq_len, model.config.seq_len)
    x, y, pack_stats = pack(tokenizer, load_conversations(data), seq_len)
    val_x, val_y, _ = pack(tokenizer, load_conversations(data, VAL), seq_len) if data.n_val else (None, None, {})
    if len(x) == 0:
        raise ValueError(
            f"no trainable conversation in {data.dir}: every assistant turn was cut off at seq_len={seq_len}"
        )

    def loss(batch):
        xb, yb = batch
        with amp:
            _, mean = model(xb, yb)  # mean over the assistant targets only (y = -1 elsewhere)
        return mean, int((xb != tokenizer.pad_id).sum())

    spec = OptimizerSpec("adamw", cfg.lr, cfg.weight_decay, cfg.betas, muon_lr=cfg.lr, fused=device.type == "cuda")
    schedule = Schedule(cfg.max_steps, cfg.warmup_steps, cfg.schedule, floor=cfg.min_lr_ratio)
    loop = TrainLoop(model, build_optimizers(model, spec), schedule, RowBatches(x, y, cfg.batch_size, cfg.seed, device),
                     loss, out, device=device, grad_clip=cfg.grad_clip, name="sft",
                     advice="lower sft.lr or raise sft.warmup_steps", lora=cfg.lora is not None)

    def val_loss() -> float:
        return masked_loss(model, val_x, val_y, cfg.batch_size, device, amp)

    if resume is not None:
        loop.restore(resume)
        history = {k: v for k, v in ckpt.read_sidecar(resume)["metrics"].items() if k != "train_loss"}
    else:
        history = {"val_loss_before": val_loss()} if data.n_val else {}

    def evaluate() -> None:
        history[f"val_loss_step_{loop.state.step}"] = val_loss()

    def save() -> Path | None:
        sidecar = {
            **start.inherited(),
            "sft": cfg.model_dump(mode="json"),
            "sft_data": {"manifest_sha256": data.manifest_sha256, "path": data.path},
            "base_checkpoint": {"path": str(start.base_dir), "manifest_sha256": base.manifest_sha256},
            "tokens_seen": loop.state.tokens_seen,
            "n_params": start.n_params,
            "metrics": {"train_loss": loop.state.loss, **history},
        }
        return loop.save(sidecar, start.base_dir / ckpt.TOKENIZER, keep_last=1)

    def report(log) -> None:
        state = loop.state
        progress.update("sft", done=state.step, total=cfg.max_steps, unit="steps", note=f"loss {log.loss:.3f}",
                        eta_s=(cfg.max_steps - state.step) * state.train_seconds / state.step)

    loop.fit(on_step=report, evaluate=evaluate if data.n_val else None, eval_every=cfg.eval_every, save=save,
             checkpoint_every=cfg.checkpoint_every)
    if data.n_val:
        history["val_loss"] = val_loss()
    if loop.saved_step != loop.state.step:
        save()
    state, final = loop.state, ckpt.step_dir(out, loop.state.step)
    stats = {**pack_stats, "steps": state.step, "tokens_seen": state.tokens_seen,
             "train_seconds": round(state.train_seconds, 3), "final_train_loss": state.loss,
             "tokens_per_s": round(state.tokens_seen / max(state.train_seconds, 1e-9), 1),
             **{k: v for k, v in history.items() if not math.isnan(v)}}
    ref = CheckpointRef.at(final, step=state.step, n_params=start.n_params, tokens_seen=state.tokens_seen,
                           train_seconds=state.train_seconds, final_train_loss=state.loss)
    return finish_stage(out, ref, config=cfg, entry=run_sft, stats=stats, files=ckpt.checkpoint_files(final),
                        started=t0)


@task(name="resolve-sft-base", retries=1)
def resolve_sft_base(source: str, tracking: TrackingConfig, tokens_dir: str | None = None) -> SFTBase:
    return resolve_base(source, tracking, tokens_dir)


@task(name="sft", retries=1)
def sft(cfg: SFTConfig, base: CheckpointRef, data: ConversationSet) -> CheckpointRef:
    out = stage_dir("sft", cfg, base, data, entry=run_sft)
    return load_done(out, CheckpointRef) or run_sft(cfg, base, data, out)
