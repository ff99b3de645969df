"""The training kernel: one loop for every way lmforge trains a model (pretraining, SFT, DPO, a classification head).

A method supplies its data as a `BatchSource` (batches, and the position a resumed run continues from), its loss as a
`LossFn` (a batch -> the mean loss and the tokens it trained on) and its `Schedule`; `TrainLoop` owns the rest: the
per-group learning rate (and Muon's momentum ramp), gradient accumulation, the fp16 gradient scaler, clipping, the
update, the NaN/inf guard (kept on the device, checked at log steps and before anything is saved), evaluation and
checkpoint hooks, and the checkpoint itself: weights, optimizer state (sharded through DCP under FSDP), scaler,
loader position, RNG states and `LoopState`, so a run killed with SIGKILL and restarted on the same directory resumes
exactly. `load_resumed` puts a resumed run's weights (or LoRA adapters) on a model holding its starting weights.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from models.distributed.process_group import DistInfo
from tasks.train.schedule import Schedule

if TYPE_CHECKING:
    import torch

NO_STEP = float("inf")  # "no non-finite loss yet" (min over ranks picks the earliest real step)


class BatchSource(Protocol):
    """A method's training batches, in an order a resumed run repeats from `state_dict()`."""

    def next_batch(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


LossFn = Callable[[Any], "tuple[torch.Tensor, int]"]  # batch -> (mean loss, a 0-d tensor with grad; tokens trained on)


@dataclass
class LoopState:
    """What a run resumes from besides weights, optimizer and loader state: written into `state.pt` by `save` and
    read back by `restore` (STYLE 13)."""

    step: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0  # in optimizer steps only (evaluation and saving excluded): the time budget's clock
    loss: float = float("nan")  # the last logged step's mean loss over micro-batches and ranks


@dataclass(frozen=True)
class StepLog:
    """A log step's numbers (every `log_every` steps and the last)."""

    step: int
    lr_multiplier: float
    loss: float
    grad_norm: float
    tokens: int  # trained on in this step, every rank's


def load_resumed(model, resume: Path | None, lora: bool, sharded: bool = False) -> None:
    """A resumed run's weights onto `model`, which holds the run's starting weights (and, for LoRA, fresh adapters):
    a LoRA run is its start plus the saved adapters, any other the checkpoint's weights (a sharded run's come with its
    DCP state in `TrainLoop.restore`)."""
    from models.optimisation.lora import load_adapter_state
    from models.weights import checkpoint as ckpt

    if resume is None:
        return
    if lora:
        load_adapter_state(model, ckpt.load_state(resume)["lora"])
    elif not sharded:
        ckpt.load_weights(model, resume)


class TrainLoop:
    """One run's optimization: `step` advances it by one optimizer step, `fit` runs it to the schedule's end with the
    method's hooks, `save` / `restore` checkpoint it in `out`."""

    def __init__(
        self,
        model,
        optimizers: list,
        schedule: Schedule,
        batches: BatchSource,
        loss: LossFn,
        out: Path,
        *,
        device,
        grad_clip: float,
        name: str,
        advice: str,
        info: DistInfo | None = None,
        accum: int = 1,
        float16: bool = False,
        sync_grads: Callable[[bool], None] | None = None,
        momentum_warmup: int = 0,
        log_every: int = 1,
        sharded: bool = False,
        lora: bool = False,
    ):
        """`model` is the unwrapped module (its parameters are clipped and saved); `loss` runs whatever wraps it.
        `name` (the stage) and `advice` (what to change before a rerun) word the NaN/inf error. `sync_grads(last)` is
        told before each micro-batch whether it is the step's last (DDP reduces gradients once per step)."""
        import torch

        self.model, self.optimizers, self.schedule = model, optimizers, schedule
        self.batches, self.loss_fn = batches, loss
        self.out, self.device, self.grad_clip, self.name, self.advice = out, device, grad_clip, name, advice
        self.info, self.accum, self.sync_grads = info or DistInfo(), accum, sync_grads
        self.momentum_warmup, self.log_every, self.sharded, self.lora = momentum_warmup, log_every, sharded, lora
        self.scaler = torch.amp.GradScaler(device.type, enabled=float16)  # fp16 gradients underflow without it
        self.state = LoopState()
        self.start_step, self.saved_step = 0, -1
        self.loss_sum = None  # the last step's summed micro-batch losses, on the device
        # the first step whose loss was not finite, kept on the device: checked at log steps and before any save
        self.first_nonfinite = torch.full((), NO_STEP, dtype=torch.float64, device=device)

    def running(self) -> bool:
        return not self.schedule.done(self.state.step, self.state.train_seconds)

    def due(self, every: int) -> bool:
        return bool(every) and self.state.step % every == 0

    def step(self) -> StepLog | None:
        """One optimizer step: schedule, accumulated micro-batches, clipping, the update, the clock; a log step's
        numbers (after the NaN/inf check), else None."""
        import torch

        from models.distributed import process_group as distributed
        from models.hardware import devices
        from models.optimisation.muon import muon_momentum

        state, info, device = self.state, self.info, self.device
        t_step = time.perf_counter()
        mult = self.schedule.multiplier(state.step, state.train_seconds)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult
                if "momentum" in group:  # Muon's
                    group["momentum"] = muon_momentum(state.step, self.momentum_warmup)
        loss_sum, tokens = torch.zeros((), device=device), 0
        for micro in range(self.accum):
            batch = self.batches.next_batch()
            if self.sync_grads is not None:
                self.sync_grads(micro == self.accum - 1)  # reduce once per optimizer step
            loss, n = self.loss_fn(batch)
            self.scaler.scale(loss / self.accum).backward()
            loss_sum += loss.detach()
            tokens += n
        for opt in self.optimizers:
            self.scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.grad_clip if self.grad_clip > 0 else float("inf")
        )
        for opt in self.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        state.step += 1
        self.loss_sum = loss_sum
        self.first_nonfinite = torch.where(
            (self.first_nonfinite == NO_STEP) & ~torch.isfinite(loss_sum), float(state.step), self.first_nonfinite
        )
        state.tokens_seen += tokens
        logging = state.step % self.log_every == 0 or state.step == self.schedule.max_steps
        if logging:
            devices.synchronize(device)  # the clock below then covers the GPU's work, not just its queueing
        state.train_seconds += time.perf_counter() - t_step
        if self.schedule.max_seconds:  # one clock: rank 0's drives every rank's schedule and stop
            state.train_seconds = distributed.rank0_value(info, state.train_seconds, device)
        if not logging:
            return None
        self.check_finite()
        state.loss = self.mean_loss()
        return StepLog(state.step, mult, state.loss, float(grad_norm), tokens)

    def mean_loss(self) -> float:
        """The last step's loss, averaged over its micro-batches and over ranks."""
        from models.distributed import process_group as distributed

        return distributed.mean_over_ranks(self.info, (self.loss_sum / self.accum).item(), self.device)

    def fit(
        self,
        on_step: Callable[[StepLog | None], None] | None = None,
        evaluate: Callable[[], Any] | None = None,
        eval_every: int = 0,
        save: Callable[[], Any] | None = None,
        checkpoint_every: int = 0,
    ) -> None:
        """Step to the schedule's end: `on_step` after each step (with its numbers on log steps), `evaluate` every
        `eval_every` steps and `save` every `checkpoint_every` steps before the last (the method evaluates and saves
        the last step itself, once its final numbers are in); a non-finite loss raises before the end."""
        while self.running():
            log = self.step()
            if on_step is not None:
                on_step(log)
            if evaluate is not None and self.due(eval_every) and self.state.step < self.schedule.max_steps:
                evaluate()
            if save is not None and self.due(checkpoint_every) and self.state.step < self.schedule.max_steps:
                save()
        self.check_finite()
        if self.state.step > self.start_step and self.state.step % self.log_every:  # the last step was not logged
            self.state.loss = self.mean_loss()

    def check_finite(self) -> None:
        """Raise (on every rank together) once any rank's loss turned NaN/inf, before anything is saved from it."""
        from models.distributed import process_group as distributed
        from models.weights import checkpoint as ckpt

        bad = distributed.min_over_ranks(self.info, float(self.first_nonfinite.item()), self.device)
        if bad != NO_STEP:
            last = ckpt.latest_checkpoint(self.out)
            raise FloatingPointError(
                f"{self.name} loss became NaN/inf at step {int(bad)}; stopped without saving. The last good "
                f"checkpoint is {last or 'none'}: {self.advice}, then rerun (a rerun with the same config resumes "
                "from that checkpoint and diverges again)."
            )

    def state_dict(self) -> dict[str, Any]:
        """What `state.pt` holds: plain tensors and containers only (`torch.load(weights_only=True)` reads it)."""
        import torch

        from models.optimisation.lora import adapter_state

        return {
            **asdict(self.state),
            "optimizer": [] if self.sharded else [opt.state_dict() for opt in self.optimizers],
            **({"lora": adapter_state(self.model)} if self.lora else {}),
            "scaler": self.scaler.state_dict(),
            "loader": self.batches.state_dict(),
            "rng": {
                "cpu": torch.get_rng_state(),
                **({"cuda": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
            },
        }

    def save(self, sidecar: dict[str, Any], tokenizer_file: Path, keep_last: int) -> Path | None:
        """A checkpoint of this step in `out` (the path on the main rank, None on the others): weights (LoRA runs: the
        merged model; FSDP: gathered, with every rank's shards beside them), `state.pt` and the sidecar."""
        import shutil

        from models.distributed import dcp, process_group as distributed
        from models.optimisation.lora import merged_state
        from models.weights import checkpoint as ckpt

        self.check_finite()
        info, at_step = self.info, self.state.step
        staged = ckpt.staging_dir(self.out, at_step)
        if info.is_main:
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir(parents=True)
        distributed.barrier(info)
        if self.sharded:  # every rank writes its shards of the model and optimizer state
            dcp.save_sharded(self.model, self.optimizers, staged / ckpt.SHARDED)
        state = self.state_dict()
        model_state = dcp.full_model_state(self.model) if self.sharded else None  # a collective: every rank joins
        if self.lora:
            model_state = merged_state(self.model)  # the checkpoint is a plain model; state.pt keeps the adapters
        path = None
        if info.is_main:
            path = ckpt.save_checkpoint(
                self.out, at_step, self.model, state, sidecar, tokenizer_file, keep_last, model_state, staged
            )
        distributed.barrier(info)
        self.saved_step = at_step
        return path

    def restore(self, resume: Path) -> None:
        """Optimizer, scaler, loader, RNG and `LoopState` from checkpoint `resume` (`load_resumed` put its weights
        on the model before the optimizers were built)."""
        import torch

        from models.distributed import dcp
        from models.weights import checkpoint as ckpt

        state = ckpt.load_state(resume)
        if self.sharded:
            if not (resume / ckpt.SHARDED).is_dir():
                raise ValueError(f"{resume} holds no sharded state: resume it with train.distributed=ddp")
            dcp.load_sharded(self.model, self.optimizers, resume / ckpt.SHARDED)
        elif len(state["optimizer"]) != len(self.optimizers):
            raise ValueError(
                f"{resume} holds its optimizer state sharded (an FSDP run): resume it with train.distributed=fsdp "
                "under torchrun, or start a new run with train.init_from=<checkpoint dir> to continue from its weights"
            )
        else:
            for opt, opt_state in zip(self.optimizers, state["optimizer"]):
                opt.load_state_dict(opt_state)
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.batches.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng"]["cpu"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        # checkpoints written before LoopState kept the last loss in the sidecar only
        loss = state.get("loss", ckpt.read_sidecar(resume).get("metrics", {}).get("train_loss", float("nan")))
        self.state = LoopState(state["step"], state["tokens_seen"], state["train_seconds"], loss)
        self.start_step = self.saved_step = self.state.step  # that step is on disk already
