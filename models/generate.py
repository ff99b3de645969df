"""The generation engine: chat template, context budget, sampling, stop strings and UTF-8-safe streaming deltas.

One engine serves every path that generates text from a checkpoint: `lmforge serve`, `lmforge chat`, the MLflow
pyfunc (`models.pyfunc`) and the fine-tuning stages' sample answers. It needs only `models/` (the checkpoint format
lives in `models.checkpoint`), so a registered model carries no stage code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.chat import encode_chat, special_id

DEFAULT_MAX_TOKENS = 128


class ChatEngine:
    """Chat generation over a loaded model: template, context budget, sampling, stop conditions, UTF-8-safe deltas."""

    def __init__(self, model: Any, tokenizer: Any, sidecar: dict[str, Any], name: str = "lmforge") -> None:
        self.model, self.tokenizer, self.sidecar, self.name = model, tokenizer, sidecar, name
        self.stop_ids = {special_id(tokenizer, "<|end|>"), tokenizer.eos_id, tokenizer.bos_id}
        self.context = int(getattr(model.config, "seq_len", 256))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path | str, device: str = "cpu", name: str = "lmforge") -> ChatEngine:
        from models.checkpoint import load_model

        model, tokenizer, sidecar = load_model(checkpoint_dir, device=device)
        return cls(model, tokenizer, sidecar, name)

    def prompt_ids(self, messages: list[dict[str, Any]], max_tokens: int) -> list[int]:
        ids, _ = encode_chat(self.tokenizer, messages, add_generation_prompt=True)
        budget = max(1, self.context - min(max_tokens, self.context // 2))
        return ids[-budget:]  # the oldest turns fall out of the window first

    def stream(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.7,
        top_k: int | None = 50,
        top_p: float | None = None,
        stop: list[str] | None = None,
    ) -> Iterator[tuple[str, str | None, int, int]]:
        """Yield (text delta, finish_reason or None, prompt tokens, completion tokens) as tokens are sampled."""
        import torch

        prompt = self.prompt_ids(messages, max_tokens)
        device = next(self.model.parameters()).device
        idx = torch.tensor([prompt], dtype=torch.long, device=device)
        generated: list[int] = []
        text = emitted = ""
        finish = "length"
        for _ in range(max_tokens):
            idx = self.model.generate(idx, 1, temperature=temperature, top_k=top_k, top_p=top_p)
            token = int(idx[0, -1])
            if token in self.stop_ids:
                finish = "stop"
                break
            generated.append(token)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            cut = min((text.find(s) for s in stop or [] if s and s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
                break
            safe = held_back(text, stop or [])
            if safe > len(emitted):
                delta, emitted = text[len(emitted) : safe], text[:safe]
                yield delta, None, len(prompt), len(generated)
            if idx.size(1) >= self.context:  # slide the window: drop the oldest tokens
                idx = idx[:, -(self.context - 1) :]
        text = text.rstrip("\ufffd")  # a character cut off by max_tokens is dropped, not sent half-decoded
        yield text[len(emitted) :] if text.startswith(emitted) else "", finish, len(prompt), len(generated)

    def complete(self, messages: list[dict[str, Any]], **sampling: Any) -> tuple[str, str, int, int]:
        """(answer, finish_reason, prompt tokens, completion tokens)."""
        parts, finish, n_prompt, n_out = [], "length", 0, 0
        for delta, finish_reason, n_prompt, n_out in self.stream(messages, **sampling):
            parts.append(delta)
            finish = finish_reason or finish
        return "".join(parts).strip(), finish, n_prompt, n_out


def held_back(text: str, stop: list[str]) -> int:
    """How much of `text` is safe to send: not a half-decoded multi-byte character, not the start of a stop string."""
    safe = len(text.rstrip("\ufffd"))
    for s in stop:
        for k in range(min(len(s) - 1, safe), 0, -1):
            if text[:safe].endswith(s[:k]):
                safe -= k
                break
    return safe
