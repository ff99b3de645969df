"""Sample generations from fixed prompts: what a person reads to judge a model beside its numbers."""

from __future__ import annotations

from typing import Any

from tasks.evaluate.config import EvalConfig


def sample_generations(model: Any, tokenizer: Any, cfg: EvalConfig, device: str) -> list[str]:
    import torch

    torch.manual_seed(cfg.seed)
    samples = []
    for prompt in cfg.prompts:
        idx = torch.tensor([[tokenizer.bos_id, *tokenizer.encode(prompt)]], dtype=torch.long, device=device)
        out = model.generate(idx, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, eos_id=tokenizer.eos_id)
        samples.append(prompt + tokenizer.decode(out[0, idx.shape[1] :].tolist(), skip_special_tokens=True))
    return samples
