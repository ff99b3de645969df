"""How a model runs, apart from what it is: device and dtype choice, AMP, activation checkpointing, torch.compile,
DDP and FSDP2 (torchtitan's split between `model.py` and `parallelize.py`).

Distributed runs start under `torchrun`, which sets RANK / WORLD_SIZE / LOCAL_RANK; gloo is used on CPU, NCCL on
CUDA. The unwrapped model stays the owner of the parameters, so checkpoints always use its (HF-compatible) names.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

# dense bf16 tensor-core peak FLOP/s by device name, for the MFU estimate
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """ "auto" = CUDA when available, else CPU; under torchrun each rank takes cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{os.environ['LOCAL_RANK']}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "auto" = bf16 autocast on CUDA, fp32 on CPU (CPU bf16 is slow and breaks bit-exact resume tests)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up; a plain process is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def autocast(device: torch.device, dtype: torch.dtype):
    """bf16/fp16 autocast for the forward pass; a no-op context in fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def parallelize(
    model: nn.Module,
    info: DistInfo,
    device: torch.device,
    *,
    compile: bool = False,
    activation_checkpointing: bool = False,
    strategy: str = "ddp",
) -> nn.Module:
    """The module the training loop calls: `model` with checkpointing, compile and DDP/FSDP2 applied.

    FSDP2 (`fully_shard`) shards each block, then the root, in place: parameters become DTensors, so the caller
    gathers full state dicts with `torch.distributed.checkpoint.state_dict` when saving.
    """
    if activation_checkpointing:
        if not hasattr(model, "grad_checkpointing"):
            raise ValueError(f"{type(model).__name__} does not support train.activation_checkpointing")
        model.grad_checkpointing = True
    wrapped = model
    if info.world_size > 1 and strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(getattr(model, "model", model), "layers", []):
            fully_shard(block)
        fully_shard(model)
    if compile:
        wrapped = torch.compile(wrapped)
    if info.world_size > 1 and strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "cuda" else None)
    return wrapped


def no_sync(wrapped: nn.Module, last_micro_step: bool):
    """Skip DDP's gradient all-reduce on all but the last micro-step of gradient accumulation."""
    if last_micro_step or not hasattr(wrapped, "no_sync"):
        return contextlib.nullcontext()
    return wrapped.no_sync()


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s of one device for the MFU estimate; None when unknown (CPU)."""
    if device.type != "cuda" or dtype == torch.float32:
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


def optimizer_state(model: nn.Module, optimizers: list, info: DistInfo, strategy: str) -> list[dict]:
    """Optimizer states to checkpoint. Under FSDP none are saved yet (gathering them with
    `get_optimizer_state_dict` failed on torch 2.13 with our param groups), so FSDP runs cannot resume exactly."""
    if strategy == "fsdp" and info.world_size > 1:
        return []
    return [opt.state_dict() for opt in optimizers]


def load_optimizer_state(model: nn.Module, optimizers: list, states: list[dict], info: DistInfo, strategy: str) -> None:
    if len(states) != len(optimizers):
        raise ValueError(
            "the checkpoint holds no optimizer state for this run (FSDP checkpoints do not yet): start a new run "
            "with train.init_from=<checkpoint dir> to continue from its weights"
        )
    for opt, state in zip(optimizers, states):
        opt.load_state_dict(state)


def full_model_state(model: nn.Module) -> dict:
    """The full state dict of an FSDP2-sharded model, on CPU, gathered on every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
