"""Incremental decoding: next-token logits for a growing sequence, at a cost per token that does not grow with it.

`decoder_for(model, context)` picks how an architecture continues a sequence:
- `gpt`, `gpt2` (anything with `new_caches`): a KV cache; each new token runs one position through the model;
- `rnn` (a `forward` taking `state`): the recurrent state; each new token is one step;
- `gcnn` (a `receptive_field`): the last receptive field's worth of tokens, which gives exactly the logits of a full
  pass at a fixed cost (a convolution has no cache to keep, and needs none);
- anything else: a full recompute of the last `context` tokens (the only path whose cost grows with the context).
A decoder with a `capacity` (the KV cache's length) is full when `length == capacity`; the chat engine then starts a
new one on a shortened context (`models.generate`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


class Decoder:
    """Full recompute: `feed(ids)` appends ids and returns the logits (V,) of the next token."""

    def __init__(self, model: Any, capacity: int | None) -> None:
        self.model, self.capacity, self.ids = model, capacity, []

    @property
    def length(self) -> int:
        return len(self.ids)

    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tensor(self, ids: list[int]) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.long, device=self.device())

    @torch.no_grad()
    def feed(self, ids: list[int]) -> torch.Tensor:
        self.ids += ids
        window = self.ids[-self.capacity :] if self.capacity else self.ids
        logits, _ = self.model(self.tensor(window))
        return logits[0, -1]


class KVCacheDecoder(Decoder):
    def __init__(self, model: Any, capacity: int) -> None:
        super().__init__(model, capacity)
        self.caches = model.new_caches(1, capacity)
        self.capacity = self.caches[0]["k"].size(2)  # gpt2 caps it at its learned positions

    @torch.no_grad()
    def feed(self, ids: list[int]) -> torch.Tensor:
        self.ids += ids
        logits, _ = self.model(self.tensor(ids), caches=self.caches)
        return logits[0, -1]


class RecurrentDecoder(Decoder):
    def __init__(self, model: Any) -> None:
        super().__init__(model, None)
        self.state: list = []

    @torch.no_grad()
    def feed(self, ids: list[int]) -> torch.Tensor:
        self.ids += ids
        logits, _ = self.model(self.tensor(ids), state=self.state)
        return logits[0, -1]


class WindowDecoder(Decoder):
    """Convolutions see a fixed receptive field: recomputing it is exact and costs the same at any length."""

    @torch.no_grad()
    def feed(self, ids: list[int]) -> torch.Tensor:
        self.ids += ids
        logits, _ = self.model(self.tensor(self.ids[-self.model.receptive_field :]))
        return logits[0, -1]


def decoder_for(model: Any, context: int) -> Decoder:
    """The cheapest exact way to continue a sequence with `model`, holding at most `context` tokens where bounded."""
    if hasattr(model, "new_caches"):
        return KVCacheDecoder(model, context)
    if "state" in inspect.signature(model.forward).parameters:
        return RecurrentDecoder(model)
    if hasattr(model, "receptive_field"):
        return WindowDecoder(model, None)
    return Decoder(model, context)
