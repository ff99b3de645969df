"""Which device and dtype a model runs on, and the per-device set-up and measurements around it: the one device rule
(`resolve_device`: "auto" = CUDA when present) that training, evaluation, serving and the registered pyfuncs share,
the dtype rule (`resolve_dtype`), TF32, AMP autocast, CUDA synchronisation and peak memory."""

from __future__ import annotations

import contextlib
import os

import torch


def resolve_device(name: str) -> torch.device:
    """ "auto" = CUDA when available, else CPU; under torchrun each rank takes cuda:LOCAL_RANK. The one device rule:
    training, evaluation, the chat engine (`lmforge serve/chat --device`) and the registered pyfuncs all use it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    if name == "cuda":  # always an index: set_device, DDP's device_ids and the RNG state calls need one
        name = f"cuda:{os.environ.get('LOCAL_RANK', torch.cuda.current_device())}"
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "auto" = bf16 autocast on a CUDA device that supports it, fp16 (with a gradient scaler) on older GPUs, fp32 on
    CPU (CPU bf16 is slow and breaks bit-exact resume tests). An explicit bf16 on a GPU without it is an error."""
    bf16_ok = device.type != "cuda" or torch.cuda.is_bf16_supported(including_emulation=False)
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if bf16_ok else torch.float16
    if name == "bfloat16" and not bf16_ok:
        raise ValueError(
            f"train.dtype=bfloat16 but {torch.cuda.get_device_name(device)} has no bf16 tensor cores; "
            "use 'float16' or 'auto'"
        )
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def setup_device(device: torch.device) -> None:
    """TF32 for the fp32 matmuls and convolutions left outside autocast (optimizer math, fp32 runs) on CUDA."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so a host clock read afterwards measures the GPU's time, not the launch queue's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak CUDA memory allocated since the last call (then reset); None on CPU, where no per-step figure exists."""
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return peak


def autocast(device: torch.device, dtype: torch.dtype):
    """bf16/fp16 autocast for the forward pass; a no-op context in fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
