"""The KV cache of the transformer archs (`gpt`, `gpt2`): per-layer keys and values, how full each row is, and which
rows the next forward pass advances.

One `KVCache` holds `B` rows (sequences) of up to `max_len` positions. A forward pass reads it through a view
(`at`): either some rows advance together by T positions from one common length (a prompt, or every row of
`generate`), or — batched decoding — each row advances one position at its own length, so sequences of different
lengths share one pass (continuous batching). The model's forward calls `advance` once its layers ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(eq=False)
class KVCache:
    keys: list[torch.Tensor]  # per layer (B, Hkv, max_len, D)
    values: list[torch.Tensor]  # per layer (B, Hkv, max_len, D)
    lengths: list[int]  # positions filled, per row (shared by every view of the cache)
    rows: list[int] | None = None  # the rows the next pass advances; None: every row
    pos: torch.Tensor | None = None  # batched decoding: (N,) each advanced row's one new position (its length)
    start: int = field(init=False)  # the first position the pass writes (the last, when batched: RoPE's reach)
    index: torch.Tensor | slice = field(init=False)  # `rows` as an index into dim 0 of keys and values

    def __post_init__(self) -> None:
        rows = list(range(len(self.lengths))) if self.rows is None else self.rows
        # every row advancing together reads and writes slices (views); a subset, or positions that differ per row
        # (paired with the rows index by index), need an index tensor
        whole = self.rows is None and self.pos is None
        self.index = slice(None) if whole else torch.tensor(rows, device=self.keys[0].device)
        if self.pos is not None:
            self.start = int(self.pos.max())
            return
        starts = {self.lengths[r] for r in rows}
        if len(starts) != 1:
            raise ValueError(f"rows advancing together must be equally long; lengths {sorted(starts)}")
        self.start = starts.pop()

    @classmethod
    def empty(cls, n_layer: int, shape: tuple[int, int, int, int], like: torch.Tensor) -> KVCache:
        """A cache of `shape` (B, Hkv, max_len, D) per layer, in `like`'s dtype and device, every row empty."""
        return cls([like.new_zeros(shape) for _ in range(n_layer)], [like.new_zeros(shape) for _ in range(n_layer)],
                   [0] * shape[0])

    @property
    def max_len(self) -> int:
        return self.keys[0].size(2)

    def at(self, rows: list[int], step: bool = False) -> KVCache:
        """The view one forward pass uses: `rows` advance together (from one common length), or with `step` one
        position each at its own length (batched decoding). Shares the tensors and the lengths."""
        pos = torch.tensor([self.lengths[r] for r in rows], device=self.keys[0].device) if step else None
        every = rows == list(range(len(self.lengths)))
        return KVCache(self.keys, self.values, self.lengths, None if every else rows, pos)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (N, Hkv, T, D) at positions start..start+T of the advanced rows; their keys and values up to
        there (N, Hkv, start+T, D)."""
        end = self.start + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {self.start} used, {k.size(2)} more given")
        self.keys[layer][self.index, :, self.start : end] = k
        self.values[layer][self.index, :, self.start : end] = v
        return self.keys[layer][self.index, :, :end], self.values[layer][self.index, :, :end]

    def scatter(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched decoding: write row i's one new position k, v (N, Hkv, 1, D) at `pos[i]`; every advanced row's
        keys and values up to the furthest position (N, Hkv, start+1, D), to be masked per row."""
        self.keys[layer][self.index, :, self.pos] = k[:, :, 0]
        self.values[layer][self.index, :, self.pos] = v[:, :, 0]
        n = self.start + 1
        return self.keys[layer][self.index, :, :n], self.values[layer][self.index, :, :n]

    def advance(self, n: int) -> None:
        """After a forward pass of n positions (1 when batched): the advanced rows are that much longer."""
        for r in range(len(self.lengths)) if self.rows is None else self.rows:
            self.lengths[r] += 1 if self.pos is not None else n
