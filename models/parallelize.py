"""How a model runs, apart from what it is: device and dtype choice, AMP, activation checkpointing, torch.compile,
DDP and FSDP2 (torchtitan's split between `model.py` and `parallelize.py`), the one clock all ranks agree on, and
the peak FLOP/s behind the MFU estimate.

Distributed runs start under `torchrun`, which sets RANK / WORLD_SIZE / LOCAL_RANK; gloo is used on CPU, NCCL on
CUDA. The unwrapped model stays the owner of the parameters, so checkpoints always use its (HF-compatible) names.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

# Dense 16-bit tensor-core peak FLOP/s (bf16, or fp16 where a GPU has no bf16; fp32 accumulation), keyed by the exact
# name `torch.cuda.get_device_name` reports, from NVIDIA's datasheets (the "with sparsity" figures halved). Exact
# keys, never substrings: "NVIDIA L40S" must not be priced as "NVIDIA L4" (MFU 3x too high). A GPU missing here gets
# no MFU rather than a wrong one; add its exact name.
PEAK_FLOPS: dict[str, float] = {
    "NVIDIA B200": 2250e12,
    "NVIDIA H200": 989e12,  # H200 SXM
    "NVIDIA H200 NVL": 835e12,
    "NVIDIA H100 80GB HBM3": 989e12,  # H100 SXM
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H100 NVL": 835e12,
    "NVIDIA H800": 989e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA L40S": 362e12,
    "NVIDIA L40": 181e12,
    "NVIDIA L4": 121e12,
    "NVIDIA A10": 125e12,
    "NVIDIA A10G": 125e12,  # no NVIDIA datasheet; AWS quotes the A10's figure
    "NVIDIA GeForce RTX 4090": 165e12,  # fp32 accumulation (330 with fp16 accumulation)
    "NVIDIA GeForce RTX 3090": 71e12,
    "Tesla V100-SXM2-16GB": 125e12,  # fp16 (no bf16)
    "Tesla V100-SXM2-32GB": 125e12,
    "Tesla T4": 65e12,  # fp16 (no bf16)
}


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
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
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


def blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks (`model.layers` for gpt, `layers` for the others): FSDP's and compile's unit."""
    return list(getattr(getattr(model, "model", model), "layers", []))


def parallelize(
    model: nn.Module,
    info: DistInfo,
    device: torch.device,
    *,
    compile: bool = False,
    activation_checkpointing: bool = False,
    strategy: str = "ddp",
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """The module the training loop calls: `model` with checkpointing, DDP/FSDP2 and then compile applied.

    FSDP2 (`fully_shard`) shards each block, then the root, in place: parameters become DTensors; on CUDA with a
    16-bit dtype the blocks compute and all-gather in that dtype and reduce gradients in fp32 (a mixed-precision
    policy), so autocast is not needed for the matmuls. DDP does not broadcast buffers (RoPE tables are derived from
    the config and equal on every rank). Compile wraps the DDP module (so DDP's bucketing and overlap survive, via
    dynamo's DDP optimizer) or the sharded model.
    """
    if activation_checkpointing:
        if not hasattr(model, "grad_checkpointing"):
            raise ValueError(f"{type(model).__name__} does not support train.activation_checkpointing")
        model.grad_checkpointing = True
    wrapped: nn.Module = model
    if info.world_size > 1 and strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy()
        if device.type == "cuda" and dtype != torch.float32:
            policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        for block in blocks(model):
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
    if info.world_size > 1 and strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    if compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def grad_sync(model: nn.Module, wrapped: nn.Module, enabled: bool) -> None:
    """Turn gradient communication on (last micro-step of accumulation) or off (the others), for DDP and FSDP2.

    DDP: its `require_backward_grad_sync` flag, which `no_sync()` toggles (set directly: the compiled wrapper has
    no context manager of its own). FSDP2: `set_requires_gradient_sync` on the root and its blocks, so micro-steps
    accumulate unsharded gradients locally and reduce-scatter once.
    """
    ddp = getattr(wrapped, "_orig_mod", wrapped)
    if hasattr(ddp, "require_backward_grad_sync"):
        ddp.require_backward_grad_sync = enabled
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(enabled)


def peak_flops_of(device_name: str) -> float | None:
    """Peak 16-bit FLOP/s of the GPU named exactly `device_name`; None when it is not in `PEAK_FLOPS`."""
    return PEAK_FLOPS.get(device_name.strip())


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s of one device for the MFU estimate; None when unknown (CPU, fp32, a GPU missing from the table)."""
    if device.type != "cuda" or dtype == torch.float32:
        return None
    return peak_flops_of(torch.cuda.get_device_name(device))


def is_sharded(info: DistInfo, strategy: str) -> bool:
    return strategy == "fsdp" and info.world_size > 1


def full_model_state(model: nn.Module) -> dict:
    """The full state dict of an FSDP2-sharded model, on CPU, gathered on every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_sharded(model: nn.Module, optimizers: list, path) -> None:
    """Write the sharded model and optimizer state of an FSDP run with DCP (each rank writes its own shards)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizers)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(path))


def load_sharded(model: nn.Module, optimizers: list, path) -> None:
    """Restore what `save_sharded` wrote into a model sharded the same way (same world size)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optimizers)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizers, model_state_dict=state["model"], optim_state_dict=state["optim"])
