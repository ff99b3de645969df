"""Token shards on disk and the batches the trainer reads from them.

Shards use the llm.c / modded-nanogpt `.bin` layout so other trainers can read our data: a header of 256 int32
(`[0]` magic, `[1]` version, `[2]` token count, the rest zero), then the tokens. GPT-2-sized vocabularies
(< 65536) use llm.c's "gpt-2" header (magic 20240520, version 1, uint16 tokens); larger ones use llm.c's
"llama-3" header (magic 20240801, version 7, uint32 tokens), exactly as llm.c's `dev/data/data_common.py` writes them.

`TokenLoader` walks the train shards in order, handing each rank of each micro-step its own contiguous window of
`B*T+1` tokens, so a run on N ranks sees exactly the tokens a single process with an N-times larger batch sees. Its
whole position is three integers (`state_dict`), which is what makes a killed run resume bit-identically.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

HEADER_INTS = 256
HEADERS = {  # token dtype -> (magic, version), as llm.c writes them
    np.dtype(np.uint16): (20240520, 1),
    np.dtype(np.uint32): (20240801, 7),
}
DTYPES = {magic_version: dtype for dtype, magic_version in HEADERS.items()}


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (the llm.c GPT-2 format), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def write_bin(path: Path | str, tokens: Sequence[int] | np.ndarray, vocab_size: int | None = None) -> Path:
    """Write `tokens` as an llm.c `.bin` shard, atomically (temporary name, then rename)."""
    path = Path(path)
    array = np.asarray(tokens)
    top = int(array.max()) + 1 if array.size else 0
    dtype = token_dtype(max(vocab_size or 0, top))
    if array.size and int(array.min()) < 0:
        raise ValueError(f"{path}: token ids must be non-negative")
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[0], header[1] = HEADERS[dtype]
    header[2] = array.size
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(array.astype(dtype, copy=False).tobytes())
    os.replace(tmp, path)
    return path


def read_header(path: Path | str) -> tuple[np.dtype, int]:
    header = np.fromfile(path, dtype=np.int32, count=HEADER_INTS)
    if header.size < HEADER_INTS:
        raise ValueError(f"{path} is too short for an llm.c .bin header (256 int32); is it a token shard?")
    key = (int(header[0]), int(header[1]))
    if key not in DTYPES:
        raise ValueError(f"{path}: unknown .bin magic/version {key}; expected one of {sorted(DTYPES)}")
    dtype, count = DTYPES[key], int(header[2])
    expected = HEADER_INTS * 4 + count * dtype.itemsize
    if Path(path).stat().st_size != expected:
        raise ValueError(f"{path}: header says {count} tokens but the file has {Path(path).stat().st_size} bytes")
    return dtype, count


def read_bin(path: Path | str, mmap: bool = True) -> np.ndarray:
    """The tokens of an llm.c `.bin` shard (memory-mapped by default, so large shards cost no RAM)."""
    dtype, count = read_header(path)
    if mmap:
        return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_INTS * 4, shape=(count,))
    return np.fromfile(path, dtype=dtype, count=count, offset=HEADER_INTS * 4)


class TokenLoader:
    """(B, T) batches over token shards, split across DDP ranks, with a resumable position.

    Each call to `next_batch` consumes one global window of `B*T*world_size` tokens; rank `r` takes the slice starting
    at `r*B*T` (+1 token for the shifted targets). A shard too short for the next window is skipped and the walk wraps
    to the first shard at the end (one more epoch). With `shuffle_seed` the same windows are visited in a random order
    drawn anew each epoch from (seed, epoch), so a run that stops early still sees a sample of the whole data set.
    """

    def __init__(
        self,
        files: Sequence[Path | str],
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        shuffle_seed: int | None = None,
    ):
        self.files = [Path(f) for f in files]
        self.pin_memory = pin_memory  # page-locked windows: one asynchronous host-to-GPU copy per micro-batch
        self.B, self.T, self.rank, self.world_size = batch_size, seq_len, rank, world_size
        self.window = batch_size * seq_len * world_size + 1
        lengths = [read_header(f)[1] for f in self.files]
        if not any(n >= self.window for n in lengths):
            raise ValueError(
                f"no token shard holds one batch ({self.window} tokens = batch_size {batch_size} x seq_len {seq_len} "
                f"x {world_size} ranks + 1); largest has {max(lengths, default=0)}: lower batch_size/seq_len or add data"
            )
        self.lengths = lengths
        self.shard, self.pos, self.epoch = 0, 0, 0
        self._tokens: np.ndarray | None = None
        self._loaded = -1
        self.shuffle_seed, self.index = shuffle_seed, 0
        stride = batch_size * seq_len * world_size
        self.starts = [(s, p) for s, n in enumerate(lengths) for p in range(0, n - self.window + 1, stride)]
        self._order: np.ndarray | None = None

    def state_dict(self) -> dict[str, int]:
        return {"shard": self.shard, "pos": self.pos, "epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.shard, self.pos, self.epoch = int(state["shard"]), int(state["pos"]), int(state["epoch"])
        self.index, self._order = int(state.get("index", 0)), None

    def _next_shuffled(self) -> None:
        """Point `shard`/`pos` at the next window of this epoch's permutation."""
        if self.index == len(self.starts):
            self.index, self.epoch, self._order = 0, self.epoch + 1, None
        if self._order is None:
            self._order = np.random.default_rng([self.shuffle_seed, self.epoch]).permutation(len(self.starts))
        self.shard, self.pos = self.starts[self._order[self.index]]
        self.index += 1

    def _advance_to_fitting_shard(self) -> None:
        while self.pos + self.window > self.lengths[self.shard]:
            self.shard, self.pos = self.shard + 1, 0
            if self.shard == len(self.files):
                self.shard, self.epoch = 0, self.epoch + 1

    def next_window(self) -> "torch.Tensor":
        """This rank's next B*T+1 tokens as one int64 tensor (pinned when asked): copy it to the device once, then
        split it with `split_window`."""
        import torch

        if self.shuffle_seed is None:
            self._advance_to_fitting_shard()
        else:
            self._next_shuffled()
        if self._loaded != self.shard:
            self._tokens, self._loaded = read_bin(self.files[self.shard]), self.shard
        start = self.pos + self.rank * self.B * self.T
        buf = torch.empty(self.B * self.T + 1, dtype=torch.int64, pin_memory=self.pin_memory)
        buf.numpy()[:] = self._tokens[start : start + self.B * self.T + 1]  # widened to int64 in the one host copy
        self.pos += self.B * self.T * self.world_size
        return buf

    def split_window(self, buf: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """(x, y) views of shape (B, T) of a window, wherever it lives; y is x shifted left by one token."""
        return buf[:-1].view(self.B, self.T), buf[1:].view(self.B, self.T)

    def next_batch(self):
        """(x, y) int64 tensors of shape (B, T); y is x shifted left by one token."""
        return self.split_window(self.next_window())


def iter_eval_batches(
    files: Sequence[Path | str], batch_size: int, seq_len: int, max_batches: int | None = None
) -> Iterator[tuple["torch.Tensor", "torch.Tensor"]]:
    """Non-overlapping (x, y) batches over held-out shards in a fixed order, for val loss / bits-per-byte.

    Covers every token of each shard once (the tail of a shard too short for a full row is dropped).
    """
    import torch

    produced = 0
    rows: list[np.ndarray] = []
    for path in files:
        tokens = read_bin(path)
        for start in range(0, len(tokens) - seq_len, seq_len):
            rows.append(np.asarray(tokens[start : start + seq_len + 1], dtype=np.int64))
            if len(rows) == batch_size:
                buf = torch.from_numpy(np.stack(rows))
                yield buf[:, :-1], buf[:, 1:]
                rows, produced = [], produced + 1
                if max_batches is not None and produced >= max_batches:
                    return
    if rows:  # a last, smaller batch so small val sets are not skipped entirely
        buf = torch.from_numpy(np.stack(rows))
        yield buf[:, :-1], buf[:, 1:]
