"""LoRA adapters on `models.architectures.gpt` with `peft`: add them, train only them, and merge them into plain
weights.

`add_lora(model, cfg)` injects peft's LoRA layers into the named projections in place (the model keeps its own
forward, KV cache and loss) and freezes everything else. Checkpoints store the merged weights (`merged_state`: what
export, evaluation and serving load, with HF names) and, for exact resume, the adapter tensors alone
(`adapter_state` / `load_adapter_state`); a resumed run rebuilds the base from its `init_from` and reloads them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

ADAPTER = "default"  # peft's adapter name


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rank: int = Field(default=16, ge=1, description="Rank r of each adapter (A: r x in, B: out x r).")
    alpha: float = Field(default=32.0, gt=0, description="Scale alpha; the update is (alpha / r) B A.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the adapter's input.")
    targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Linear modules (by name) that get adapters: the attention and MLP projections.",
    )


def add_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Inject adapters into `model` in place; only adapter weights stay trainable. B starts at zero, so the model
    computes exactly what it did before."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    peft_cfg = PeftLoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=list(cfg.targets), bias="none")
    inject_adapter_in_model(peft_cfg, model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def lora_layers(model: nn.Module) -> dict[str, Any]:
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def merged_state(model: nn.Module) -> dict[str, Any]:
    """The model's weights with every adapter folded in, under the names of the model without adapters."""
    layers = lora_layers(model)
    state = {name.replace(".base_layer", ""): t for name, t in model.state_dict().items() if "lora_" not in name}
    for name, layer in layers.items():
        state[f"{name}.weight"] = (layer.base_layer.weight + layer.get_delta_weight(ADAPTER)).detach()
    return state


def adapter_state(model: nn.Module) -> dict[str, Any]:
    """The adapter tensors alone (what a resumed run needs besides its base)."""
    return {name: t.detach().clone() for name, t in model.state_dict().items() if "lora_" in name}


def load_adapter_state(model: nn.Module, state: dict[str, Any]) -> None:
    expected = set(adapter_state(model))
    if set(state) != expected:
        raise ValueError(f"adapter state does not match the model's adapters: {sorted(set(state) ^ expected)[:4]}")
    model.load_state_dict(state, strict=False)


def trainable_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
