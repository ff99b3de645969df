"""Train stage: pretrain a model on the token shards, checkpointing as it goes and resuming exactly after a kill.

`run_train` trains in this process (CPU or one GPU) or, when launched by `torchrun` (`python -m tasks.train`; the
Prefect task launches it itself for `nproc_per_node` > 1), as one rank of DDP/FSDP2. Checkpoints (`models.checkpoint`)
hold weights, optimizer state (sharded through DCP under FSDP), RNG states and the loader position, so a run killed
with SIGKILL and restarted on the same `out` continues from the last checkpoint and, on CPU, ends bit-identical to an
uninterrupted run (unless `max_seconds` is set: a time budget depends on the clock). The Prefect task's retry relies
on this. Under several ranks, gradients are reduced once per optimizer step and rank 0's clock drives the schedule
and the time budget. A NaN/inf loss stops the run before anything is saved from it. Logs loss, lr, grad norm,
tokens/s, MFU and peak memory to MLflow in batches.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import Literal

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from models.gpt import ModelConfig
from models.lora import LoraConfig
from tasks.core import progress
from tasks.core.artifacts import CheckpointRef, TokenSet, finish_stage, load_done, stage_dir
from tasks.train.helpers import NO_STEP, MetricLog, Tracking, evaluate_loss, load_optimizer_states, max_rss_gib


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
    betas: tuple[float, float] = Field(default=(0.9, 0.95), description="AdamW betas.")
    weight_decay: float = Field(default=0.1, ge=0, description="Decoupled weight decay on matrices.")
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


def lr_multiplier(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """Schedule factor for `step` (0-based); with a time budget the decay follows whichever runs out first."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1)  # decay spans the post-warmup run
    if cfg.max_seconds:
        progress = max(progress, elapsed / cfg.max_seconds)
    progress = min(progress, 1.0)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "wsd":
        start = 1.0 - cfg.decay_fraction
        return 1.0 if progress < start else 1.0 - (1.0 - cfg.min_lr_ratio) * (progress - start) / cfg.decay_fraction
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def run_train(cfg: TrainConfig, tokens: TokenSet, out: Path, tracking: Tracking = None) -> CheckpointRef:
    import torch
    from tqdm import tqdm

    from models import checkpoint as ckpt
    from models import parallelize as par
    from models.gpt import build_model
    from models.lora import adapter_state, add_lora, load_adapter_state, merged_state, trainable_params
    from models.muon import build_optimizers, muon_momentum
    from models.tokenizer import Tokenizer
    from tasks.core.tokens import TokenLoader

    t0 = time.time()
    device = par.resolve_device(cfg.device)
    info = par.init_distributed(device)
    par.setup_device(device)
    dtype = par.resolve_dtype(cfg.dtype, device)
    sharded = par.is_sharded(info, cfg.distributed)
    if cfg.optimizer == "muon" and sharded:
        raise ValueError("train.optimizer=muon needs whole matrices; use train.distributed=ddp")
    if dtype == torch.float16 and sharded:
        raise ValueError("train.dtype=float16 needs a gradient scaler FSDP2 does not have; use bfloat16 or ddp")
    if cfg.lora is not None and (cfg.init_from is None or sharded):
        raise ValueError("train.lora adapts a pretrained model on one process or DDP: set train.init_from (an "
                         "imported base or checkpoint) and train.distributed=ddp")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    if info.is_main:
        for leftover in out.glob(".tmp-step_*"):  # half-written checkpoint of a killed run
            shutil.rmtree(leftover, ignore_errors=True)
    par.barrier(info)
    tokenizer_file = tokens.dir / tokens.tokenizer_file
    tokenizer = Tokenizer.load(tokenizer_file)
    mcfg = cfg.model if cfg.model.vocab_size else cfg.model.model_copy(update={"vocab_size": tokens.vocab_size})
    init_sidecar = ckpt.read_sidecar(cfg.init_from) if cfg.init_from else {}
    if cfg.init_from:  # continued pretraining: the architecture is the starting checkpoint's
        mcfg = ModelConfig.model_validate(init_sidecar["model"])
    if mcfg.vocab_size < tokens.vocab_size:
        raise ValueError(
            f"train.model.vocab_size={mcfg.vocab_size} < tokenizer vocab {tokens.vocab_size}; use 0 (auto)"
        )

    torch.manual_seed(cfg.seed)  # same seed on every rank: identical initial weights without a broadcast
    model = build_model(mcfg)
    resume = ckpt.latest_checkpoint(out)
    if resume is not None and not sharded and cfg.lora is None:
        ckpt.load_weights(model, resume)
    elif cfg.init_from and (resume is None or cfg.lora is not None):  # LoRA resumes as base + saved adapters
        if init_sidecar["tokenizer"]["sha256"] != tokenizer.sha256:
            raise ValueError(
                f"train.init_from={cfg.init_from} was trained with another tokenizer than {tokenizer_file}"
            )
        ckpt.load_weights(model, cfg.init_from)
    base_params = model.num_params()
    if cfg.lora is not None:
        add_lora(model, cfg.lora)
        if resume is not None:
            load_adapter_state(model, ckpt.load_state(resume)["lora"])
    model.to(device)
    wrapped = par.parallelize(
        model,
        info,
        device,
        compile=cfg.compile,
        activation_checkpointing=cfg.activation_checkpointing,
        strategy=cfg.distributed,
        dtype=dtype,
    )
    optimizers = build_optimizers(
        model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.betas, cfg.muon_lr, device.type == "cuda",
        cfg.embed_lr, cfg.head_lr, cfg.cautious_weight_decay,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # fp16 gradients underflow without

    T, B = cfg.seq_len or mcfg.seq_len, cfg.batch_size
    micro_tokens = B * T * info.world_size
    accum = max(1, round(cfg.tokens_per_step / micro_tokens)) if cfg.tokens_per_step else 1
    loader = TokenLoader(
        [tokens.dir / f for f in tokens.train_files], B, T, info.rank, info.world_size, device.type == "cuda"
    )
    val_files = [tokens.dir / f for f in tokens.val_files]
    step, tokens_seen, train_seconds, resumed_loss = 0, 0, 0.0, float("nan")
    if resume is not None:
        state = ckpt.load_state(resume)
        if sharded:
            if not (resume / ckpt.SHARDED).is_dir():
                raise ValueError(f"{resume} holds no sharded state: resume it with train.distributed=ddp")
            par.load_sharded(model, optimizers, resume / ckpt.SHARDED)
        else:
            load_optimizer_states(optimizers, state["optimizer"], resume)
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng"]["cpu"])
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        step, tokens_seen, train_seconds = state["step"], state["tokens_seen"], state["train_seconds"]
        resumed_loss = ckpt.read_sidecar(resume).get("metrics", {}).get("train_loss", float("nan"))

    amp_ctx = par.autocast(device, dtype)
    peak = par.peak_flops(device, dtype)
    flops_per_token = model.flops_per_token(T) if hasattr(model, "flops_per_token") else 6.0 * model.num_params()
    log = MetricLog(tracking, info.is_main, out / "log.jsonl")
    log.tag(world_size=info.world_size, distributed=cfg.distributed if info.world_size > 1 else "none")
    bar = tqdm(
        total=cfg.max_steps, initial=step, disable=None if (cfg.progress and info.is_main) else True, desc="train"
    )
    resumed_from, start_step = step, step
    loss_value, val_loss, tokens_per_s, saved_step, peak_mem = resumed_loss, float("nan"), 0.0, -1, 0.0
    window_t, window_tokens = time.perf_counter(), 0
    # the first step whose loss was not finite, kept on the device: checked at log steps and before any save
    first_nonfinite = torch.full((), NO_STEP, dtype=torch.float64, device=device)

    def bpb(loss: float) -> float:  # estimate: the eval batches are assumed to have the whole val set's bytes/token
        return loss / math.log(2) * tokens.n_val_tokens / tokens.val_bytes if tokens.val_bytes else float("nan")

    def stop_if_nonfinite() -> None:
        """Raise (on every rank together) once any rank's loss turned NaN/inf, before anything is saved from it."""
        bad = par.min_over_ranks(info, float(first_nonfinite.item()), device)
        if bad != NO_STEP:
            last = ckpt.latest_checkpoint(out)
            raise FloatingPointError(
                f"train loss became NaN/inf at step {int(bad)}; stopped without saving. The last good checkpoint is "
                f"{last or 'none'}: lower train.lr, raise train.warmup_steps or use train.dtype=bfloat16/float32, "
                "then rerun (a rerun with the same config resumes from that checkpoint and diverges again)."
            )

    def save(at_step: int) -> Path | None:
        stop_if_nonfinite()
        staged = ckpt.staging_dir(out, at_step)
        if info.is_main:
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir(parents=True)
        par.barrier(info)
        if sharded:  # every rank writes its shards of the model and optimizer state
            par.save_sharded(model, optimizers, staged / ckpt.SHARDED)
        state = {
            "step": at_step,
            "tokens_seen": tokens_seen,
            "train_seconds": train_seconds,
            "optimizer": [] if sharded else [opt.state_dict() for opt in optimizers],
            **({"lora": adapter_state(model)} if cfg.lora is not None else {}),
            "scaler": scaler.state_dict(),
            "loader": loader.state_dict(),
            "rng": {
                "cpu": torch.get_rng_state(),
                **({"cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
            },
        }
        sidecar = {
            "model": mcfg.model_dump(mode="json"),
            "train": cfg.model_dump(mode="json"),
            "tokens_seen": tokens_seen,
            "n_params": base_params,
            "trainable_params": trainable_params(model),
            "arch": mcfg.arch,
            "world_size": info.world_size,
            "tokenizer": {"sha256": tokenizer.sha256, "file": ckpt.TOKENIZER, "source": str(tokenizer_file)},
            "data": {"manifest_sha256": tokens.manifest_sha256, "path": tokens.path},
            "metrics": {"train_loss": loss_value, "val_loss": val_loss},
            **({"source": init_sidecar["source"]} if "source" in init_sidecar else {}),  # the imported base's
        }
        model_state = par.full_model_state(model) if sharded else None  # a collective: every rank takes part
        if cfg.lora is not None:
            model_state = merged_state(model)  # the checkpoint is a plain model; state.pt keeps the adapters
        path = None
        if info.is_main:
            path = ckpt.save_checkpoint(
                out, at_step, model, state, sidecar, tokenizer_file, cfg.keep_last, model_state, staged
            )
        par.barrier(info)
        return path

    try:
        while step < cfg.max_steps and not (cfg.max_seconds and train_seconds >= cfg.max_seconds):
            t_step = time.perf_counter()
            mult = lr_multiplier(cfg, step, train_seconds)
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] = group["base_lr"] * mult
                    if "momentum" in group:  # Muon's
                        group["momentum"] = muon_momentum(step, cfg.muon_momentum_warmup)
            loss_sum = torch.zeros((), device=device)
            for micro in range(accum):
                x, y = loader.split_window(loader.next_window().to(device, non_blocking=True))  # one copy per batch
                par.grad_sync(model, wrapped, micro == accum - 1)  # reduce gradients once per optimizer step
                with amp_ctx:
                    _, loss = wrapped(x, y)
                scaler.scale(loss / accum).backward()
                loss_sum += loss.detach()
            for opt in optimizers:
                scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            )
            for opt in optimizers:
                scaler.step(opt)
            scaler.update()
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            step += 1
            first_nonfinite = torch.where(
                (first_nonfinite == NO_STEP) & ~torch.isfinite(loss_sum), float(step), first_nonfinite
            )
            tokens_seen += micro_tokens * accum
            window_tokens += micro_tokens * accum
            logging = step % cfg.log_every == 0 or step == cfg.max_steps
            if logging:
                par.synchronize(device)  # the clock below then covers the GPU's work, not just its queueing
            train_seconds += time.perf_counter() - t_step
            if cfg.max_seconds:  # one clock: rank 0's drives every rank's schedule and stop
                train_seconds = par.rank0_value(info, train_seconds, device)
            if logging:
                stop_if_nonfinite()
                loss_value = par.mean_over_ranks(info, (loss_sum / accum).item(), device)
                tokens_per_s = window_tokens / max(time.perf_counter() - window_t, 1e-9)
                window_t, window_tokens = time.perf_counter(), 0
                mfu = {"train__mfu": flops_per_token * tokens_per_s / (peak * info.world_size)} if peak else {}
                memory = par.peak_memory_gib(device)
                peak_mem = max(peak_mem, memory or 0.0)
                mem = {"train__peak_mem_gib": memory} if memory is not None else {"train__max_rss_gib": max_rss_gib()}
                log.add(
                    step,
                    train__loss=loss_value,
                    train__lr=cfg.lr * mult,
                    train__grad_norm=float(grad_norm),
                    train__tokens_per_s=tokens_per_s,
                    **mfu,  # none on CPU or an unknown GPU: no MFU rather than a wrong one
                    train__seconds=train_seconds,
                    **mem,
                )
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_per_s:,.0f}")
                if cfg.progress and info.is_main:  # the console's live line (tasks.core.progress)
                    left = (cfg.max_steps - step) * train_seconds / max(step - start_step, 1)
                    progress.update("train", done=step, total=cfg.max_steps, unit="steps",
                                    note=f"loss {loss_value:.3f} · {tokens_per_s:,.0f} tok/s",
                                    eta_s=min(left, cfg.max_seconds - train_seconds) if cfg.max_seconds else left)
            bar.update(1)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
                val_loss = evaluate_loss(wrapped, val_files, B, T, cfg.eval_batches, device, amp_ctx)
                log.add(step, val__loss=val_loss, val__bpb=bpb(val_loss), train__seconds=train_seconds)
                log.flush()
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save(step)
                saved_step = step
        bar.close()
        stop_if_nonfinite()
        if step > start_step and step % cfg.log_every:  # the last step was not logged: take its loss now
            loss_value = par.mean_over_ranks(info, (loss_sum / accum).item(), device)
        val_loss = evaluate_loss(wrapped, val_files, B, T, cfg.eval_batches, device, amp_ctx)
    finally:
        bar.close()
        log.flush()  # the curve up to a failure is worth keeping
    val_bpb = bpb(val_loss)
    log.add(step, val__loss=val_loss, val__bpb=val_bpb, train__seconds=train_seconds)
    log.flush()
    final = out / f"step_{step:06d}"
    if saved_step != step and not (resume is not None and resume.name == final.name):  # not already on disk
        save(step)
    tokens_per_s = tokens_seen / train_seconds if train_seconds else 0.0  # over the whole run, resumes included
    stats = {
        "steps": step,
        "resumed_from_step": resumed_from,
        "world_size": info.world_size,
        "grad_accum": accum,
        "params": base_params,
        "tokens_seen": tokens_seen,
        "train_seconds": round(train_seconds, 3),
        "final_train_loss": loss_value,
        "val_loss": val_loss,
        "val_bpb_estimate": val_bpb,
        "tokens_per_s": round(tokens_per_s, 1),
        "flops_per_token": flops_per_token,
        "mfu": (flops_per_token * tokens_per_s / (peak * info.world_size)) if peak else None,
        **({"peak_mem_gib": round(peak_mem, 3)} if device.type == "cuda" else {}),
    }
    ref = CheckpointRef(
        path=str(out),
        checkpoint=final.name,
        tokenizer_file=str((final / ckpt.TOKENIZER).resolve()),
        step=step,
        n_params=base_params,
        tokens_seen=tokens_seen,
        train_seconds=round(train_seconds, 3),
        final_train_loss=loss_value,
    )
    if info.is_main:
        files = [f"{final.name}/{name}" for name in (ckpt.WEIGHTS, ckpt.STATE, ckpt.SIDECAR, ckpt.TOKENIZER)]
        ref = finish_stage(out, ref, config=cfg, stats=stats, files=files, started=t0)
    par.barrier(info)
    return ref if info.is_main else load_done(out, CheckpointRef)


@task(name="train", retries=1)
def train(cfg: TrainConfig, tokens: TokenSet, tracking: Tracking = None) -> CheckpointRef:
    """Train in this process, or with `torchrun` on `train.nproc_per_node` processes (default: every visible GPU)."""
    from tasks.train.launch import launch, processes

    out = stage_dir("train", cfg, tokens)
    done = load_done(out, CheckpointRef)
    if done:
        return done
    nproc = processes(cfg.nproc_per_node, cfg.device)
    return launch(cfg, tokens, out, tracking, nproc) if nproc > 1 else run_train(cfg, tokens, out, tracking)


def main() -> None:
    """`torchrun --nproc_per_node N -m tasks.train --config train.json --tokens tokens.json --out DIR`."""
    from models.parallelize import destroy_distributed
    from tasks.core.tracking import TrackingConfig

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", type=Path, required=True, help="TrainConfig as JSON")
    parser.add_argument("--tokens", type=Path, required=True, help="TokenSet as JSON (the tokenize stage's ref)")
    parser.add_argument("--out", type=Path, required=True, help="stage directory for checkpoints and manifest")
    parser.add_argument("--tracking", type=Path, help='MLflow as JSON: {"config": TrackingConfig, "run_id": ...}')
    args = parser.parse_args()
    cfg = TrainConfig.model_validate_json(args.config.read_text())
    tracking = None
    if args.tracking:
        raw = json.loads(args.tracking.read_text())
        tracking = (TrackingConfig.model_validate(raw["config"]), raw["run_id"])
    try:
        ref = run_train(cfg, TokenSet.model_validate_json(args.tokens.read_text()), args.out, tracking)
    finally:
        destroy_distributed()
    print(json.dumps(ref.model_dump(mode="json")))


if __name__ == "__main__":
    main()
