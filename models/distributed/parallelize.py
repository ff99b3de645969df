"""How a model is wrapped for training, apart from what it is (torchtitan's split between `model.py` and
`parallelize.py`): activation checkpointing, DDP or FSDP2, then torch.compile, and the gradient-sync switch for
accumulation. The unwrapped model stays the owner of the parameters, so checkpoints always use its (HF-compatible)
names. Device and dtype choice live in `models.hardware.devices`, the process group in
`models.distributed.process_group`, sharded checkpoints in `models.distributed.dcp`, the peak-FLOPS table in
`models.hardware.flops`.
"""

from __future__ import annotations

import torch
from torch import nn


from models.distributed.process_group import DistInfo

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


def is_sharded(info: DistInfo, strategy: str) -> bool:
    return strategy == "fsdp" and info.world_size > 1
