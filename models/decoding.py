"""Incremental decoding: next-token logits for a growing sequence, at a cost per token that does not grow with it.

`decoder_for(model, context)` picks how an architecture continues a sequence:
- `gpt`, `gpt2` (anything with `new_caches`): a KV cache; each new token runs one position through the model;
- `rnn` (a `forward` taking `state`): the recurrent state; each new token is one step;
- `gcnn` (a `receptive_field`): the last receptive field's worth of tokens, which gives exactly the logits of a full
  pass at a fixed cost (a convolution has no cache to keep, and needs none);
- anything else: a full recompute of the last `context` tokens (the only path whose cost grows with the context).
A decoder with a `capacity` (the KV cache's length) is full when `length == capacity`; the chat engine then starts a
new one on a shortened context (`models.generate`). `SlotDecoder` decodes several sequences in one forward pass
(continuous batching, for the KV-cache archs); the chat server's worker uses it.
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

    def tensor(self, ids: list[int]) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.long, device=next(self.model.parameters()).device)

    @torch.no_grad()
    def feed(self, ids: list[int]) -> torch.Tensor:
        self.ids += ids
        logits, _ = self.run(ids)
        return logits[0, -1]

    def run(self, new: list[int]) -> tuple[torch.Tensor, Any]:
        """The model's output for the sequence now that `new` was appended (only its last position is used)."""
        return self.model(self.tensor(self.ids[-self.capacity :] if self.capacity else self.ids))


class KVCacheDecoder(Decoder):
    def __init__(self, model: Any, capacity: int) -> None:
        super().__init__(model, capacity)
        self.caches = model.new_caches(1, capacity)
        self.capacity = self.caches[0]["k"].size(2)  # gpt2 caps it at its learned positions

    def run(self, new: list[int]) -> tuple[torch.Tensor, Any]:
        return self.model(self.tensor(new), caches=self.caches)


class RecurrentDecoder(Decoder):
    def __init__(self, model: Any) -> None:
        super().__init__(model, None)
        self.state: list = []

    def run(self, new: list[int]) -> tuple[torch.Tensor, Any]:
        return self.model(self.tensor(new), state=self.state)


class WindowDecoder(Decoder):
    """Convolutions see a fixed receptive field: recomputing it is exact and costs the same at any length."""

    def run(self, new: list[int]) -> tuple[torch.Tensor, Any]:
        return self.model(self.tensor(self.ids[-self.model.receptive_field :]))


class SlotDecoder:
    """Continuous batching: up to `slots` sequences, each in its own slot of one KV cache, advance together — one
    forward pass per step for all of them, whatever their lengths. A sequence joins when a slot is free (its prompt
    runs alone into its slot) and leaves when it ends, while the others keep going."""

    def __init__(self, model: Any, slots: int, capacity: int) -> None:
        self.model = model
        self.caches = model.new_caches(slots, capacity)
        self.capacity = self.caches[0]["k"].size(2)
        self.lengths = [0] * slots
        self.free = list(range(slots))
        self.device = self.caches[0]["k"].device

    @torch.no_grad()
    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        """Run a prompt into `slot` (starting it afresh); the logits (V,) of its next token."""
        views = [{"k": c["k"][slot : slot + 1], "v": c["v"][slot : slot + 1], "len": 0} for c in self.caches]
        logits, _ = self.model(torch.tensor([ids], dtype=torch.long, device=self.device), caches=views)
        self.lengths[slot] = len(ids)
        return logits[0, -1]

    @torch.no_grad()
    def step(self, tokens: dict[int, int]) -> dict[int, torch.Tensor]:
        """Append one token to each slot in `tokens` (slot -> token); the logits (V,) of each slot's next token."""
        slots = list(tokens)
        rows = torch.tensor(slots, dtype=torch.long, device=self.device)
        pos = torch.tensor([self.lengths[s] for s in slots], dtype=torch.long, device=self.device)
        batch = [{"k": c["k"], "v": c["v"], "rows": rows, "pos": pos} for c in self.caches]
        idx = torch.tensor([[tokens[s]] for s in slots], dtype=torch.long, device=self.device)
        logits, _ = self.model(idx, caches=batch)
        for s in slots:
            self.lengths[s] += 1
        return {s: logits[i, -1] for i, s in enumerate(slots)}


class StateSlotDecoder:
    """`SlotDecoder` for recurrent models (rnn): each slot keeps its own LSTM state; a step stacks the states of the
    slots it advances into one batch, runs one pass, and splits them back."""

    def __init__(self, model: Any, slots: int) -> None:
        self.model, self.capacity = model, None
        self.states: list[list] = [[] for _ in range(slots)]
        self.lengths = [0] * slots
        self.free = list(range(slots))
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        self.states[slot] = []
        logits, _ = self.model(torch.tensor([ids], dtype=torch.long, device=self.device), state=self.states[slot])
        self.lengths[slot] = len(ids)
        return logits[0, -1]

    @torch.no_grad()
    def step(self, tokens: dict[int, int]) -> dict[int, torch.Tensor]:
        slots = list(tokens)
        layers = range(len(self.states[slots[0]]))
        state = [tuple(torch.cat([self.states[s][i][j] for s in slots], dim=1) for j in (0, 1)) for i in layers]
        idx = torch.tensor([[tokens[s]] for s in slots], dtype=torch.long, device=self.device)
        logits, _ = self.model(idx, state=state)  # (h, c) per layer: (1, B, C)
        for row, s in enumerate(slots):
            self.states[s] = [(h[:, row : row + 1], c[:, row : row + 1]) for h, c in state]
            self.lengths[s] += 1
        return {s: logits[i, -1] for i, s in enumerate(slots)}


def batchable(model: Any) -> bool:
    """Whether `model` decodes several sequences in one pass: KV cache (gpt, gpt2) or LSTM state (rnn); gcnn (its
    window recompute) and test doubles are decoded one sequence at a time."""
    from models.rnn import RNNLM

    return hasattr(model, "new_caches") or isinstance(model, RNNLM)


def slot_decoder_for(model: Any, slots: int, context: int) -> SlotDecoder | StateSlotDecoder:
    """The batched decoder of a `batchable` model, `slots` sequences at most."""
    return SlotDecoder(model, slots, context) if hasattr(model, "new_caches") else StateSlotDecoder(model, slots)


def decoder_for(model: Any, context: int) -> Decoder:
    """The cheapest exact way to continue a sequence with `model`, holding at most `context` tokens where bounded."""
    if hasattr(model, "new_caches"):
        return KVCacheDecoder(model, context)
    if "state" in inspect.signature(model.forward).parameters:
        return RecurrentDecoder(model)
    if hasattr(model, "receptive_field"):
        return WindowDecoder(model, None)
    return Decoder(model, context)
