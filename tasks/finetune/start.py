"""What SFT and DPO do before their first step, in one place: the device, autocast and thread count their config
asks for, the output dir, and the base checkpoint's model (loaded on the CPU: the caller adds adapters or resumed
weights before moving it), tokenizer and sidecar."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from tasks.core.artifacts import CheckpointRef

# sidecar keys a fine-tuned checkpoint keeps from its base: what the model is and what it was trained on
INHERITED = ("model", "arch", "tokenizer", "data", "source")


class DeviceSettings(Protocol):
    device: str
    dtype: str
    threads: int


class Start(NamedTuple):
    device: Any  # torch.device
    amp: AbstractContextManager
    model: Any  # the base model, on the CPU
    tokenizer: Any
    sidecar: dict
    n_params: int  # the base model's, before any adapter
    base_dir: Path  # the base checkpoint's step directory

    def inherited(self) -> dict:
        return {k: self.sidecar[k] for k in INHERITED if k in self.sidecar}


def start_from(cfg: DeviceSettings, base: CheckpointRef, out: Path) -> Start:
    import torch

    from models.hardware import devices
    from models.weights import checkpoint as ckpt

    device = devices.resolve_device(cfg.device)
    amp = devices.autocast(device, devices.resolve_dtype(cfg.dtype, device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    base_dir = base.dir / base.checkpoint
    model, tokenizer, sidecar = ckpt.load_model(base_dir, device="cpu")
    return Start(device, amp, model, tokenizer, sidecar, model.num_params(), base_dir)
