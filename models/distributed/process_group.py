"""The process group of a multi-process run: joining and leaving it, the rank this process is, and the few values
all ranks must agree on (one clock, a loss averaged over ranks, the first NaN step on any rank).

Distributed runs start under `torchrun`, which sets RANK / WORLD_SIZE / LOCAL_RANK; gloo is used on CPU, NCCL on
CUDA. A plain process is rank 0 of 1, and every helper is then a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up; a plain process is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=_device_id(device))
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _device_id(device: torch.device) -> torch.device | None:
    return device if device.type == "cuda" else None


def destroy_distributed() -> None:
    """Leave the process group (torchrun warns, and NCCL may hang at exit, without it)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def rank0_value(info: DistInfo, value: float, device: torch.device) -> float:
    """`value` as rank 0 has it, on every rank: one clock for the lr schedule and the time budget, so replicas
    compute the same learning rate and leave the loop at the same step."""
    if info.world_size == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def min_over_ranks(info: DistInfo, value: float, device: torch.device) -> float:
    """The smallest `value` over all ranks, on every rank (the first step any rank saw a NaN loss: they stop
    together)."""
    return _reduce(info, value, device, "min")


def mean_over_ranks(info: DistInfo, value: float, device: torch.device) -> float:
    """The mean of `value` over all ranks (each rank's loss covers only its own rows of the global batch)."""
    return _reduce(info, value, device, "mean")


def _reduce(info: DistInfo, value: float, device: torch.device, op: str) -> float:
    if info.world_size == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return float(t.item()) / (info.world_size if op == "mean" else 1)
