"""Incremental decoding: next-token logits for growing sequences at a cost per token that does not grow with them,
and `decode`, the one loop every generation path runs (`generate` of each arch, the chat engine, the server).

Each architecture declares how it continues a sequence, as a class attribute `decoding = Decoding(...)`:
- `gpt`, `gpt2`: `KVCacheDecoder`; each new token runs one position through the model;
- `rnn`: `RecurrentDecoder`, the LSTM state; each new token is one step;
- `gcnn`: `WindowDecoder`, the last receptive field's worth of tokens, which gives exactly the logits of a full pass
  at a fixed cost (a convolution has no cache to keep, and needs none);
- `Decoder` is the strategies' base: the slots, and starting and stepping them (tests add a full recompute, the
  reference every strategy must match).
Every decoder holds `slots` sequences: `prefill` starts one, `step` advances several by one token each in one
forward pass where the arch is `batched` (continuous batching: a sequence joins when a slot frees, leaves when it
ends). A decoder with a `capacity` (a KV cache's length) is full for a slot when its length reaches it; `decode`
then restarts that slot on the context its stream refits (half of it) — the one place that rule lives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class Decoding:
    """An architecture's declared way of decoding: its decoder class, and whether several sequences decode in one
    forward pass (`batched`: the server then batches continuously; otherwise it serves one request at a time)."""

    decoder: type[Decoder]
    batched: bool = False


class Decoder(ABC):
    """A decoding strategy: how `slots` sequences continue, each one token at a time. This base keeps the slots
    (which are free, how long each is) and starts and steps them; a strategy says how a pass runs (`forward`) and
    how a slot starts afresh (`reset`)."""

    def __init__(self, model: Any, capacity: int | None, slots: int = 1) -> None:
        self.model, self.capacity = model, capacity
        self.lengths = [0] * slots  # tokens fed, per slot
        self.free = list(range(slots))
        self.device = next(model.parameters()).device

    def full(self, slot: int) -> bool:
        return self.capacity is not None and self.lengths[slot] >= self.capacity

    @abstractmethod
    def reset(self, slot: int) -> None:
        """Empty `slot`: its next `forward` starts a sequence."""

    @abstractmethod
    def forward(self, slots: list[int], idx: torch.Tensor) -> torch.Tensor:
        """Append idx (N, T) to the sequences in `slots` (equally long when T > 1); next-token logits (N, V)."""

    def tensor(self, rows: list[list[int]]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def start(self, prompts: dict[int, list[int]]) -> dict[int, torch.Tensor]:
        """Start each slot's sequence afresh on its prompt (equally long prompts in one pass); the logits (V,) of
        each one's next token."""
        logits: dict[int, torch.Tensor] = {}
        for group in same_length(prompts):
            group.sort()  # every row of a cache, in order, reads and writes it through views
            for slot in group:
                self.reset(slot)
            logits.update(zip(group, self.forward(group, self.tensor([prompts[s] for s in group])), strict=True))
        return logits

    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        """Start `slot` afresh on `ids`; the logits (V,) of its next token."""
        return self.start({slot: ids})[slot]

    @torch.no_grad()
    def step(self, tokens: dict[int, int]) -> dict[int, torch.Tensor]:
        """Append one token to each slot in `tokens` (slot -> token); the logits (V,) of each slot's next token."""
        slots = list(tokens)
        return dict(zip(slots, self.forward(slots, self.tensor([[tokens[s]] for s in slots])), strict=True))


class WindowDecoder(Decoder):
    """Convolutions see a fixed receptive field: recomputing it is exact and costs the same at any length. Every
    pass runs each sequence's last `window` tokens through the model."""

    def __init__(self, model: Any, capacity: int | None = None, slots: int = 1) -> None:
        super().__init__(model, None, slots)  # never full: the window slides
        self.ids: list[list[int]] = [[] for _ in range(slots)]

    def reset(self, slot: int) -> None:
        self.ids[slot], self.lengths[slot] = [], 0

    def forward(self, slots: list[int], idx: torch.Tensor) -> torch.Tensor:
        windows: dict[int, list[int]] = {}
        for slot, new in zip(slots, idx.tolist(), strict=True):
            self.ids[slot] += new
            self.lengths[slot] = len(self.ids[slot])
            windows[slot] = self.window(slot)
        logits = {}
        for group in same_length(windows):  # windows of one length run in one pass
            out, _ = self.model(self.tensor([windows[s] for s in group]))
            logits.update(zip(group, out[:, -1], strict=True))
        return torch.stack([logits[s] for s in slots])

    def window(self, slot: int) -> list[int]:
        return self.ids[slot][-self.model.receptive_field :]


class KVCacheDecoder(Decoder):
    """One `models.decoding.kv_cache.KVCache` row per slot: a pass runs only the new positions."""

    def __init__(self, model: Any, capacity: int | None, slots: int = 1) -> None:
        super().__init__(model, capacity, slots)
        self.cache = model.new_cache(slots, capacity)
        self.capacity = self.cache.max_len  # gpt2 caps it at its learned positions; None: the model's longest
        self.lengths = self.cache.lengths  # the model's forward advances them

    def reset(self, slot: int) -> None:
        self.cache.lengths[slot] = 0

    def forward(self, slots: list[int], idx: torch.Tensor) -> torch.Tensor:
        # rows of one length advance together; a step over rows of different lengths writes each at its own
        step = idx.size(1) == 1 and len({self.lengths[s] for s in slots}) > 1
        logits, _ = self.model(idx, cache=self.cache.at(slots, step))
        return logits[:, -1]


class RecurrentDecoder(Decoder):
    """The recurrent state per slot. Several slots advance in one pass when the arch is `batched`: their LSTM states
    (per layer (h, c), each (1, 1, C)) are stacked into one batch and split back."""

    def __init__(self, model: Any, capacity: int | None = None, slots: int = 1) -> None:
        super().__init__(model, None, slots)  # never full: the state has a fixed size
        self.states: list[list] = [[] for _ in range(slots)]

    def reset(self, slot: int) -> None:
        self.states[slot], self.lengths[slot] = [], 0

    def forward(self, slots: list[int], idx: torch.Tensor) -> torch.Tensor:
        if len(slots) == 1:
            state = self.states[slots[0]]  # the model fills it in place
        elif self.states[slots[0]]:
            state = [tuple(torch.cat([self.states[s][i][j] for s in slots], dim=1) for j in (0, 1))
                     for i in range(len(self.states[slots[0]]))]
        else:  # prompts starting together
            state = []
        logits, _ = self.model(idx, state=state)
        if len(slots) > 1:
            for row, s in enumerate(slots):
                self.states[s] = [(h[:, row : row + 1], c[:, row : row + 1]) for h, c in state]
        for s in slots:
            self.lengths[s] += idx.size(1)
        return logits[:, -1]


def same_length(rows: dict[int, list[int]]) -> list[list[int]]:
    """The keys of `rows` grouped by the length of their value, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for key, value in rows.items():
        groups.setdefault(len(value), []).append(key)
    return list(groups.values())


class Streams(Protocol):
    """The sequences one `decode` loop advances: who joins, what each appends, what a full cache restarts on."""

    def join(self, slot: int) -> list[int] | None:
        """The prompt of the next sequence, which takes `slot`; None when no sequence is waiting."""

    def advance(self, logits: dict[int, torch.Tensor]) -> dict[int, int | None]:
        """Given each running slot's next-token logits (V,): the token it appends, None where its sequence ended."""

    def refit(self, slot: int) -> list[int]:
        """The context `slot`'s sequence restarts on when its cache is full (at most half the capacity)."""


def decode(decoder: Decoder, streams: Streams) -> Iterator[None]:
    """The decode loop: sequences join while a slot is free, every running one appends a token per step (one
    forward pass for all of them), a finished one leaves, and a full cache restarts its slot on the refitted
    context. Yields after each step's tokens were taken, before the next pass (a streaming caller hands on its
    output there, and may stop); returns when no sequence runs and none waits."""
    logits: dict[int, torch.Tensor] = {}
    while True:
        joining = {}
        while decoder.free and (prompt := streams.join(decoder.free[-1])) is not None:
            joining[decoder.free.pop()] = prompt
        logits.update(decoder.start(joining))
        if not logits:
            return
        tokens, restarts = {}, {}
        for slot, token in streams.advance(logits).items():
            if token is None:  # leave: the slot is free for the next sequence
                del logits[slot]
                decoder.free.append(slot)
            elif decoder.full(slot):
                restarts[slot] = streams.refit(slot)
            else:
                tokens[slot] = token
        yield
        logits.update(decoder.start(restarts))
        if tokens:
            logits.update(decoder.step(tokens))


def decoding_of(model: Any) -> Decoding:
    """The `Decoding` the model's class declares; a clear error for a model that declares none."""
    declared = getattr(type(model), "decoding", None)
    if not isinstance(declared, Decoding):
        raise TypeError(f"{type(model).__name__} declares no `decoding = Decoding(...)` (models.decoding.decoders): "
                        "say how it continues a sequence")
    return declared


def batchable(model: Any) -> bool:
    """Whether `model` decodes several sequences in one pass (gpt, gpt2, rnn; not gcnn's window recompute)."""
    return decoding_of(model).batched


def decoder_for(model: Any, context: int | None, slots: int = 1) -> Decoder:
    """The decoder `model` declares, for `slots` sequences (more than one in a pass only where it is `batchable`)
    of at most `context` tokens where bounded (None: as many as the model can hold)."""
    return decoding_of(model).decoder(model, context, slots)
