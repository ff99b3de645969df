"""LoRA on models.architectures.gpt through peft: the start is the base model, merged weights are what the adapted model
computes, only adapters train."""

from __future__ import annotations

import torch
from lm_fixtures import tiny_gpt

from models.architectures.gpt import GPT
from models.optimisation.lora import (
    LoraConfig,
    adapter_state,
    add_lora,
    load_adapter_state,
    merged_state,
    trainable_params,
)


def test_adapters_start_as_the_base_and_merge_into_plain_weights():
    model = tiny_gpt(50)
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(idx)[0]
    add_lora(model, LoraConfig(rank=4, alpha=8))
    with torch.no_grad():
        assert torch.equal(model(idx)[0], before)  # B starts at zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
        adapted = model(idx)[0]
    assert (adapted - before).abs().max() > 1e-3
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert trainable_params(model) == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)

    plain = GPT(model.config).eval()
    plain.load_state_dict(merged_state(model), strict=True)  # HF names, no adapter keys
    with torch.no_grad():
        assert (plain(idx)[0] - adapted).abs().max() < 1e-5

    again = add_lora(tiny_gpt(50), LoraConfig(rank=4, alpha=8)).eval()
    load_adapter_state(again, adapter_state(model))
    with torch.no_grad():
        assert torch.equal(again(idx)[0], adapted)
