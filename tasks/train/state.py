"""One training run's state and the functions that advance it: `TrainRun` holds what a checkpoint must restore (the
step, tokens seen, training seconds, model, optimizers, gradient scaler, loader position, RNG states) as attributes,
so `save` reads them from one place and `run_train`'s loop stays a few lines (as nanochat keeps its `loop_state`).

`TrainRun(cfg, tokens, out)` builds the run (device, distributed set-up, model, optimizers, loader) and restores the
latest checkpoint in `out`; `train_step` is one optimizer step (gradient accumulation, clipping, the fp16 scaler,
logging); `evaluate` the val loss; `save` a checkpoint; `finish` the final evaluation, checkpoint and manifest.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from models.gpt import ModelConfig
from tasks.core import progress
from tasks.core.artifacts import CheckpointRef, Entry, TokenSet, finish_stage, load_done
from tasks.core.bpb import bits_per_byte
from tasks.train.config import TrainConfig, lr_multiplier
from tasks.train.helpers import NO_STEP, MetricLog, Tracking, evaluate_loss, load_optimizer_states, max_rss_gib


class TrainRun:
    def __init__(self, cfg: TrainConfig, tokens: TokenSet, out: Path, tracking: Tracking = None):
        import torch
        from tqdm import tqdm

        from models import checkpoint as ckpt
        from models import devices, distributed, flops, parallelize
        from models.gpt import build_model
        from models.lora import add_lora, load_adapter_state
        from models.muon import build_optimizers
        from models.tokenizer import Tokenizer
        from tasks.core.tokens import TokenLoader

        self.cfg, self.tokens, self.out, self.t0 = cfg, tokens, out, time.time()
        device = self.device = devices.resolve_device(cfg.device)
        info = self.info = distributed.init_distributed(device)
        devices.setup_device(device)
        dtype = devices.resolve_dtype(cfg.dtype, device)
        sharded = self.sharded = parallelize.is_sharded(info, cfg.distributed)
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
        distributed.barrier(info)
        self.tokenizer_file = tokens.dir / tokens.tokenizer_file
        self.tokenizer = Tokenizer.load(self.tokenizer_file)
        mcfg = cfg.model if cfg.model.vocab_size else cfg.model.model_copy(update={"vocab_size": tokens.vocab_size})
        self.init_sidecar = ckpt.read_sidecar(cfg.init_from) if cfg.init_from else {}
        if cfg.init_from:  # continued pretraining: the architecture is the starting checkpoint's
            mcfg = ModelConfig.model_validate(self.init_sidecar["model"])
        if mcfg.vocab_size < tokens.vocab_size:
            raise ValueError(
                f"train.model.vocab_size={mcfg.vocab_size} < tokenizer vocab {tokens.vocab_size}; use 0 (auto)"
            )
        self.mcfg = mcfg

        torch.manual_seed(cfg.seed)  # same seed on every rank: identical initial weights without a broadcast
        model = self.model = build_model(mcfg)
        resume = self.resume = ckpt.latest_checkpoint(out)
        if resume is not None and not sharded and cfg.lora is None:
            ckpt.load_weights(model, resume)
        elif cfg.init_from and (resume is None or cfg.lora is not None):  # LoRA resumes as base + saved adapters
            if self.init_sidecar["tokenizer"]["sha256"] != self.tokenizer.sha256:
                raise ValueError(
                    f"train.init_from={cfg.init_from} was trained with another tokenizer than {self.tokenizer_file}"
                )
            ckpt.load_weights(model, cfg.init_from)
        self.base_params = model.num_params()
        if cfg.lora is not None:
            add_lora(model, cfg.lora)
            if resume is not None:
                load_adapter_state(model, ckpt.load_state(resume)["lora"])
        model.to(device)
        self.wrapped = parallelize.parallelize(
            model,
            info,
            device,
            compile=cfg.compile,
            activation_checkpointing=cfg.activation_checkpointing,
            strategy=cfg.distributed,
            dtype=dtype,
        )
        self.optimizers = build_optimizers(
            model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.betas, cfg.muon_lr, device.type == "cuda",
            cfg.embed_lr, cfg.head_lr, cfg.cautious_weight_decay, cfg.embed_weight_decay, cfg.scalar_lr,
            cfg.muon_variant,
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # fp16 gradients underflow

        self.T, self.B = cfg.seq_len or mcfg.seq_len, cfg.batch_size
        self.micro_tokens = self.B * self.T * info.world_size
        self.accum = max(1, round(cfg.tokens_per_step / self.micro_tokens)) if cfg.tokens_per_step else 1
        self.loader = TokenLoader(
            [tokens.dir / f for f in tokens.train_files], self.B, self.T, info.rank, info.world_size,
            device.type == "cuda", shuffle_seed=cfg.seed if cfg.shuffle else None,
        )
        self.val_files = [tokens.dir / f for f in tokens.val_files]
        self.step, self.tokens_seen, self.train_seconds, self.loss_value = 0, 0, 0.0, float("nan")
        if resume is not None:
            self._restore(resume)

        self.amp_ctx = devices.autocast(device, dtype)
        self.peak = flops.peak_flops(device, dtype)
        self.flops_per_token = (
            model.flops_per_token(self.T) if hasattr(model, "flops_per_token") else 6.0 * model.num_params()
        )
        self.log = MetricLog(tracking, info.is_main, out / "log.jsonl")
        self.log.tag(world_size=info.world_size, distributed=cfg.distributed if info.world_size > 1 else "none")
        self.bar = tqdm(
            total=cfg.max_steps, initial=self.step, disable=None if (cfg.progress and info.is_main) else True,
            desc="train",
        )
        self.start_step = self.step
        self.val_loss, self.tokens_per_s, self.saved_step, self.peak_mem = float("nan"), 0.0, -1, 0.0
        self.window_t, self.window_tokens = time.perf_counter(), 0
        self.loss_sum = None  # the last step's summed micro-batch losses, on the device
        # the first step whose loss was not finite, kept on the device: checked at log steps and before any save
        self.first_nonfinite = torch.full((), NO_STEP, dtype=torch.float64, device=device)

    def _restore(self, resume: Path) -> None:
        """Optimizer, scaler, loader, RNG and counters from checkpoint `resume` (the weights are already loaded)."""
        import torch

        from models import checkpoint as ckpt
        from models import dcp

        state = ckpt.load_state(resume)
        if self.sharded:
            if not (resume / ckpt.SHARDED).is_dir():
                raise ValueError(f"{resume} holds no sharded state: resume it with train.distributed=ddp")
            dcp.load_sharded(self.model, self.optimizers, resume / ckpt.SHARDED)
        else:
            load_optimizer_states(self.optimizers, state["optimizer"], resume)
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng"]["cpu"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step, self.tokens_seen, self.train_seconds = state["step"], state["tokens_seen"], state["train_seconds"]
        self.loss_value = ckpt.read_sidecar(resume).get("metrics", {}).get("train_loss", float("nan"))

    @property
    def resumed_from(self) -> int:
        return self.start_step

    def running(self) -> bool:
        cfg = self.cfg
        return self.step < cfg.max_steps and not (cfg.max_seconds and self.train_seconds >= cfg.max_seconds)

    def due(self, every: int) -> bool:
        return bool(every) and self.step % every == 0

    def train_step(self) -> None:
        """One optimizer step: schedule, accumulated micro-batches, clipping, the update, the clock, the log line."""
        import torch

        from models import devices, distributed, parallelize
        from models.muon import muon_momentum

        cfg, info, device = self.cfg, self.info, self.device
        t_step = time.perf_counter()
        mult = lr_multiplier(cfg, self.step, self.train_seconds)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult
                if "momentum" in group:  # Muon's
                    group["momentum"] = muon_momentum(self.step, cfg.muon_momentum_warmup)
        loss_sum = torch.zeros((), device=device)
        for micro in range(self.accum):
            window = self.loader.next_window().to(device, non_blocking=True)  # one copy per batch
            x, y = self.loader.split_window(window)
            parallelize.grad_sync(self.model, self.wrapped, micro == self.accum - 1)  # reduce once per optimizer step
            with self.amp_ctx:
                _, loss = self.wrapped(x, y)
            self.scaler.scale(loss / self.accum).backward()
            loss_sum += loss.detach()
        for opt in self.optimizers:
            self.scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        for opt in self.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self.step += 1
        self.loss_sum = loss_sum
        self.first_nonfinite = torch.where(
            (self.first_nonfinite == NO_STEP) & ~torch.isfinite(loss_sum), float(self.step), self.first_nonfinite
        )
        self.tokens_seen += self.micro_tokens * self.accum
        self.window_tokens += self.micro_tokens * self.accum
        logging = self.step % cfg.log_every == 0 or self.step == cfg.max_steps
        if logging:
            devices.synchronize(device)  # the clock below then covers the GPU's work, not just its queueing
        self.train_seconds += time.perf_counter() - t_step
        if cfg.max_seconds:  # one clock: rank 0's drives every rank's schedule and stop
            self.train_seconds = distributed.rank0_value(info, self.train_seconds, device)
        if logging:
            self._log_step(cfg.lr * mult, float(grad_norm))
        self.bar.update(1)

    def _log_step(self, lr: float, grad_norm: float) -> None:
        from models import devices, distributed

        cfg, info, device = self.cfg, self.info, self.device
        self.stop_if_nonfinite()
        self.loss_value = distributed.mean_over_ranks(info, (self.loss_sum / self.accum).item(), device)
        self.tokens_per_s = self.window_tokens / max(time.perf_counter() - self.window_t, 1e-9)
        self.window_t, self.window_tokens = time.perf_counter(), 0
        world_peak = self.peak * info.world_size if self.peak else None
        mfu = {"train__mfu": self.flops_per_token * self.tokens_per_s / world_peak} if world_peak else {}
        memory = devices.peak_memory_gib(device)
        self.peak_mem = max(self.peak_mem, memory or 0.0)
        mem = {"train__peak_mem_gib": memory} if memory is not None else {"train__max_rss_gib": max_rss_gib()}
        self.log.add(
            self.step,
            train__loss=self.loss_value,
            train__lr=lr,
            train__grad_norm=grad_norm,
            train__tokens_per_s=self.tokens_per_s,
            **mfu,  # none on CPU or an unknown GPU: no MFU rather than a wrong one
            train__seconds=self.train_seconds,
            **mem,
        )
        self.bar.set_postfix(loss=f"{self.loss_value:.3f}", tok_s=f"{self.tokens_per_s:,.0f}")
        if cfg.progress and info.is_main:  # the console's live line (tasks.core.progress)
            left = (cfg.max_steps - self.step) * self.train_seconds / max(self.step - self.start_step, 1)
            progress.update("train", done=self.step, total=cfg.max_steps, unit="steps",
                            note=f"loss {self.loss_value:.3f} · {self.tokens_per_s:,.0f} tok/s",
                            eta_s=min(left, cfg.max_seconds - self.train_seconds) if cfg.max_seconds else left)

    def bpb(self, loss: float) -> float:
        """The val split's bits per byte at this mean loss (the eval batches are assumed to have the whole split's
        bytes per token)."""
        return bits_per_byte(loss * self.tokens.n_val_tokens, self.tokens.val_bytes)

    def evaluate(self) -> float:
        """Val loss over `eval_batches`, logged with its bits per byte."""
        self.val_loss = evaluate_loss(
            self.wrapped, self.val_files, self.B, self.T, self.cfg.eval_batches, self.device, self.amp_ctx
        )
        self.log.add(self.step, val__loss=self.val_loss, val__bpb=self.bpb(self.val_loss),
                     train__seconds=self.train_seconds)
        self.log.flush()
        return self.val_loss

    def stop_if_nonfinite(self) -> None:
        """Raise (on every rank together) once any rank's loss turned NaN/inf, before anything is saved from it."""
        from models import checkpoint as ckpt
        from models import distributed

        bad = distributed.min_over_ranks(self.info, float(self.first_nonfinite.item()), self.device)
        if bad != NO_STEP:
            last = ckpt.latest_checkpoint(self.out)
            raise FloatingPointError(
                f"train loss became NaN/inf at step {int(bad)}; stopped without saving. The last good checkpoint is "
                f"{last or 'none'}: lower train.lr, raise train.warmup_steps or use train.dtype=bfloat16/float32, "
                "then rerun (a rerun with the same config resumes from that checkpoint and diverges again)."
            )

    def save(self) -> Path | None:
        """A checkpoint of this step: weights, the resumable state (`state.pt`) and the sidecar."""
        import torch

        from models import checkpoint as ckpt
        from models import dcp, distributed
        from models.lora import adapter_state, merged_state, trainable_params

        self.stop_if_nonfinite()
        cfg, info, out, at_step = self.cfg, self.info, self.out, self.step
        staged = ckpt.staging_dir(out, at_step)
        if info.is_main:
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir(parents=True)
        distributed.barrier(info)
        if self.sharded:  # every rank writes its shards of the model and optimizer state
            dcp.save_sharded(self.model, self.optimizers, staged / ckpt.SHARDED)
        state = {
            "step": at_step,
            "tokens_seen": self.tokens_seen,
            "train_seconds": self.train_seconds,
            "optimizer": [] if self.sharded else [opt.state_dict() for opt in self.optimizers],
            **({"lora": adapter_state(self.model)} if cfg.lora is not None else {}),
            "scaler": self.scaler.state_dict(),
            "loader": self.loader.state_dict(),
            "rng": {
                "cpu": torch.get_rng_state(),
                **({"cuda": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
            },
        }
        sidecar = {
            "model": self.mcfg.model_dump(mode="json"),
            "train": cfg.model_dump(mode="json"),
            "tokens_seen": self.tokens_seen,
            "n_params": self.base_params,
            "trainable_params": trainable_params(self.model),
            "arch": self.mcfg.arch,
            "world_size": info.world_size,
            "tokenizer": {"sha256": self.tokenizer.sha256, "file": ckpt.TOKENIZER, "source": str(self.tokenizer_file)},
            "data": {"manifest_sha256": self.tokens.manifest_sha256, "path": self.tokens.path},
            "metrics": {"train_loss": self.loss_value, "val_loss": self.val_loss},
            **({"source": self.init_sidecar["source"]} if "source" in self.init_sidecar else {}),  # an imported base's
        }
        model_state = dcp.full_model_state(self.model) if self.sharded else None  # a collective: every rank joins
        if cfg.lora is not None:
            model_state = merged_state(self.model)  # the checkpoint is a plain model; state.pt keeps the adapters
        path = None
        if info.is_main:
            path = ckpt.save_checkpoint(
                out, at_step, self.model, state, sidecar, self.tokenizer_file, cfg.keep_last, model_state, staged
            )
        distributed.barrier(info)
        self.saved_step = at_step
        return path

    def end_loop(self) -> None:
        """After the last step: stop on a non-finite loss, take an unlogged last step's loss, evaluate."""
        from models import distributed

        self.bar.close()
        self.stop_if_nonfinite()
        if self.step > self.start_step and self.step % self.cfg.log_every:  # the last step was not logged
            self.loss_value = distributed.mean_over_ranks(self.info, (self.loss_sum / self.accum).item(), self.device)
        self.val_loss = evaluate_loss(
            self.wrapped, self.val_files, self.B, self.T, self.cfg.eval_batches, self.device, self.amp_ctx
        )

    def close(self) -> None:
        self.bar.close()
        self.log.flush()  # the curve up to a failure is worth keeping

    def finish(self, entry: Entry) -> CheckpointRef:
        """Log the final val loss, save the last step unless on disk already, write the stage manifest (recording the
        code of `entry`, the stage's `run_…` function)."""
        from models import checkpoint as ckpt
        from models import distributed

        info, step = self.info, self.step
        val_bpb = self.bpb(self.val_loss)
        self.log.add(step, val__loss=self.val_loss, val__bpb=val_bpb, train__seconds=self.train_seconds)
        self.log.flush()
        final = self.out / f"step_{step:06d}"
        if self.saved_step != step and not (self.resume is not None and self.resume.name == final.name):
            self.save()
        tokens_per_s = self.tokens_seen / self.train_seconds if self.train_seconds else 0.0  # resumes included
        mfu = (self.flops_per_token * tokens_per_s / (self.peak * info.world_size)) if self.peak else None
        stats = {
            "steps": step,
            "resumed_from_step": self.resumed_from,
            "world_size": info.world_size,
            "grad_accum": self.accum,
            "params": self.base_params,
            "tokens_seen": self.tokens_seen,
            "train_seconds": round(self.train_seconds, 3),
            "final_train_loss": self.loss_value,
            "val_loss": self.val_loss,
            "val_bpb_estimate": val_bpb,
            "tokens_per_s": round(tokens_per_s, 1),
            "flops_per_token": self.flops_per_token,
            "mfu": mfu,
            **({"peak_mem_gib": round(self.peak_mem, 3)} if self.device.type == "cuda" else {}),
        }
        ref = CheckpointRef(
            path=str(self.out),
            checkpoint=final.name,
            tokenizer_file=str((final / ckpt.TOKENIZER).resolve()),
            step=step,
            n_params=self.base_params,
            tokens_seen=self.tokens_seen,
            train_seconds=round(self.train_seconds, 3),
            final_train_loss=self.loss_value,
        )
        if info.is_main:
            files = [f"{final.name}/{name}" for name in (ckpt.WEIGHTS, ckpt.STATE, ckpt.SIDECAR, ckpt.TOKENIZER)]
            ref = finish_stage(self.out, ref, config=self.cfg, entry=entry, stats=stats, files=files,
                               started=self.t0)
        distributed.barrier(info)
        return ref if info.is_main else load_done(self.out, CheckpointRef)
