"""Sample generations from fixed prompts: what a person reads to judge a model beside its numbers."""

from __future__ import annotations

from typing import Any

from tasks.evaluate.config import EvalConfig


def prompt_ids(tokenizer: Any, prompt: str, chat: bool) -> tuple[list[int], str]:
    """(ids, text shown) of a sample prompt: plain text after the document separator, or a user turn in the model's
    chat template (shown as its text, without a leading separator)."""
    if not chat:
        return [tokenizer.bos_id, *tokenizer.encode(prompt)], prompt
    from models.text.chat import encode_chat

    ids = encode_chat(tokenizer, [{"role": "user", "content": prompt}])[0]
    return ids, tokenizer.decode(ids[1:] if ids[:1] == [tokenizer.bos_id] else ids)


def sample_generations(model: Any, tokenizer: Any, cfg: EvalConfig, device: str) -> list[str]:
    import torch

    torch.manual_seed(cfg.seed)
    samples = []
    for prompt in cfg.prompts:
        ids, shown = prompt_ids(tokenizer, prompt, cfg.chat_prompts)
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        out = model.generate(idx, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, eos_id=tokenizer.eos_id)
        samples.append(shown + tokenizer.decode(out[0, idx.shape[1] :].tolist(), skip_special_tokens=True))
    return samples
