"""Checkpoints of an FSDP2-sharded model with torch's Distributed Checkpoint (DCP): each rank writes and reads its
own shards of the model and optimizer state, and the full (unsharded) weights are gathered for the safetensors
checkpoint every other stage reads."""

from __future__ import annotations

from torch import nn


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
