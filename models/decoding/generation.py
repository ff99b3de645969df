"""`generate` for every arch: the `Generation` mixin runs a batch of rows through the decoder the arch declares
(`decoding`) in the one decode loop (`decode`), each row a stream (`RowStreams`) that samples, stops at eos
and refits its context when the decoder is full.
"""

from __future__ import annotations

import torch

from models.decoding.decoders import decode, decoder_for
from models.decoding.sampling import sample_next


class Generation:
    """`generate` for every arch: the rows run through the decoder the arch declares (`decoding`) in the one
    decode loop (`models.decoding.decoders.decode`), one slot per row, with as long a context as the decoder holds."""

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by up to max_new_tokens sampled tokens; returns (B, T + n). temperature 0 = greedy."""
        decoder = decoder_for(self, None, slots=idx.size(0))
        rows = RowStreams(idx, decoder.capacity, max_new_tokens, temperature, top_k, top_p, eos_id)
        for _ in decode(decoder, rows):
            pass
        return rows.idx


def append_sampled(
    idx: torch.Tensor, nxt: torch.Tensor, done: torch.Tensor, eos_id: int | None
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Append nxt (B, 1) to idx; rows that already ended keep emitting eos. Returns (idx, done, all rows ended)."""
    if eos_id is None:
        return torch.cat((idx, nxt), dim=1), done, False
    nxt = torch.where(done[:, None], torch.full_like(nxt, eos_id), nxt)
    done = done | (nxt[:, 0] == eos_id)
    return torch.cat((idx, nxt), dim=1), done, bool(done.all())


class RowStreams:
    """The rows of one `generate` call as the decode loop's streams: every row joins at once into its own slot, all
    rows sample together (one `sample_next` over the batch), a row that ended keeps emitting eos until all have (or
    max_new_tokens), and a full cache restarts a row on the most recent half of its tokens."""

    def __init__(self, idx: torch.Tensor, capacity: int | None, max_new_tokens: int, temperature: float,
                 top_k: int | None, top_p: float | None, eos_id: int | None) -> None:
        self.idx, self.capacity, self.left = idx, capacity, max_new_tokens
        self.sampling, self.eos_id = (temperature, top_k, top_p), eos_id
        self.waiting = set(range(idx.size(0)))
        self.done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)

    def join(self, slot: int) -> list[int] | None:
        if slot not in self.waiting:
            return None
        self.waiting.remove(slot)
        return self.idx[slot, -(self.capacity - 1) :].tolist() if self.capacity else self.idx[slot].tolist()

    def advance(self, logits: dict[int, torch.Tensor]) -> dict[int, int | None]:
        if self.left <= 0:
            return dict.fromkeys(logits)
        nxt = sample_next(torch.stack([logits[row] for row in range(self.idx.size(0))]), *self.sampling)  # (B, 1)
        self.idx, self.done, finished = append_sampled(self.idx, nxt, self.done, self.eos_id)
        self.left -= 1
        if finished or self.left == 0:
            return dict.fromkeys(logits)
        return dict(enumerate(self.idx[:, -1].tolist()))

    def refit(self, slot: int) -> list[int]:
        return self.idx[slot, -(self.capacity // 2) :].tolist()
