"""Scoring text: next-token loss over token streams, perplexity and bits per byte of the held-out split and of
user files. Bits per byte = total nats / (ln 2 · UTF-8 bytes), so models with different tokenizers compare."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core import progress
from tasks.core.artifacts import TokenSet
from tasks.core.bpb import bits_per_byte
from tasks.evaluate.config import EvalConfig
from tasks.evaluate.items import ItemScores, text_ids


def context_length(model: Any) -> int:
    config = getattr(model, "config", None)
    for name in ("seq_len", "block_size", "sequence_len", "n_ctx"):
        if config is not None and getattr(config, name, None):
            return int(getattr(config, name))
    raise ValueError("cannot tell the model's context length; set evaluate.seq_len")


def token_nats(model: Any, stream: np.ndarray, skip_id: int, seq_len: int, batch_size: int, device: str) -> np.ndarray:
    """nats[j] = -ln p(stream[j] | the tokens before it in its window), float64, for every position of `stream`;
    0 where nothing is scored (position 0 and targets equal to `skip_id`, the document separators). The model's
    own chunked per-position loss (`reduction="none"`), so the (B, T, V) logits are never built.

    Windows of `seq_len` targets overlap by one token, so every token after the first is scored exactly once.
    """
    import torch

    starts = list(range(0, max(1, len(stream) - 1), seq_len))
    nats = np.zeros(len(stream), dtype=np.float64)
    for b in range(0, len(starts), batch_size):
        progress.update("evaluate", done=b // batch_size, total=-(-len(starts) // batch_size), unit="batches")
        rows = [np.asarray(stream[s : s + seq_len + 1], dtype=np.int64) for s in starts[b : b + batch_size]]
        width = max(len(r) for r in rows) - 1
        x = torch.zeros((len(rows), width), dtype=torch.long)
        y = torch.full((len(rows), width), -1, dtype=torch.long)  # -1 marks padding
        for i, row in enumerate(rows):
            x[i, : len(row) - 1] = torch.from_numpy(row[:-1])
            y[i, : len(row) - 1] = torch.from_numpy(row[1:])
        y[y == skip_id] = -1  # document separators are not text: never scored
        if not bool((y >= 0).any()):
            continue
        with torch.no_grad():
            _, losses = model(x.to(device), y.to(device), reduction="none")  # (B, T)
        losses = losses.double().cpu().numpy()
        for i, (s, row) in enumerate(zip(starts[b : b + batch_size], rows)):
            nats[s + 1 : s + len(row)] = losses[i, : len(row) - 1]  # row i's targets are stream[s + 1 : s + len]
    return nats


def score_stream(model: Any, stream: np.ndarray, skip_id: int, seq_len: int, batch_size: int, device: str) -> tuple[float, int]:
    """(total nats, tokens scored) of next-token prediction over `stream`, skipping targets equal to `skip_id`."""
    nats = token_nats(model, stream, skip_id, seq_len, batch_size, device)
    return float(nats.sum()), int((np.asarray(stream[1:]) != skip_id).sum())


def document_scores(model: Any, docs: list[np.ndarray], skip_id: int, seq_len: int, batch_size: int,
                    device: str) -> tuple[np.ndarray, np.ndarray]:
    """(nats, tokens scored) per document of the stream `docs` concatenated (each document opening with its
    `<|bos|>`): the per-position losses summed over each document's span, so the totals are the stream's."""
    stream = np.concatenate(docs)
    nats = token_nats(model, stream, skip_id, seq_len, batch_size, device)
    scored = np.asarray(stream != skip_id, dtype=np.int64)
    scored[0] = 0  # the stream's first token is never a target
    bounds = np.cumsum([0] + [len(d) for d in docs[:-1]])
    return np.add.reduceat(nats, bounds), np.add.reduceat(scored, bounds)


def bpb_items(metric: str, ids: list[str], doc_nats: np.ndarray, doc_bytes: list[int]) -> ItemScores:
    """Per-document bits and bytes behind a bits-per-byte metric (`ItemScores` kind "ratio")."""
    return ItemScores(metric=metric, kind="ratio", ids=ids, values=(doc_nats / math.log(2)).tolist(),
                      weights=[float(b) for b in doc_bytes])


def nll_metrics(nats: float, tokens: int, n_bytes: int, prefix: str) -> dict[str, float]:
    loss = nats / max(1, tokens)
    return {
        f"{prefix}_loss": loss,
        f"{prefix}_ppl": math.exp(min(loss, 50.0)),
        f"{prefix}_bpb": bits_per_byte(nats, max(1, n_bytes)),
        f"{prefix}_tokens": float(tokens),
        f"{prefix}_bytes": float(n_bytes),
    }


def split_docs(tokens: np.ndarray, bos_id: int) -> list[np.ndarray]:
    """Documents of a token shard, each starting with its `<|bos|>`."""
    starts = np.flatnonzero(np.asarray(tokens) == bos_id).tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    return [np.asarray(tokens[a:b]) for a, b in zip(starts, starts[1:] + [len(tokens)])]


def heldout_metrics(model: Any, tokenizer: Any, tokens: TokenSet, cfg: EvalConfig, seq_len: int, device: str):
    """val_* metrics over the val shards (documents, each cut to `max_doc_tokens`, up to `max_val_tokens`), and the
    set's fingerprint."""
    from tasks.core.tokens import read_bin

    docs: list[np.ndarray] = []
    n_total = n_kept = n_available = 0
    for name in tokens.val_files:
        for doc in split_docs(read_bin(tokens.dir / name), tokenizer.bos_id):
            n_total += len(doc)
            n_available += 1
            if cfg.max_doc_tokens is not None:
                doc = doc[: cfg.max_doc_tokens + 1]  # its <|bos|> and the first max_doc_tokens text tokens
            if cfg.max_val_tokens is None or n_kept + len(doc) <= cfg.max_val_tokens or not docs:
                docs.append(doc)
                n_kept += len(doc)
    if not docs:
        raise ValueError(f"no val tokens in {tokens.dir} ({tokens.val_files}); the tokenize stage made no val split")
    texts = [tokenizer.decode([int(t) for t in doc if t != tokenizer.bos_id]) for doc in docs]
    decoded_bytes = sum(len(text.encode("utf-8")) for text in texts)
    complete = n_kept == n_total
    # The tokenize stage's byte count is the definition when every val document is scored; a capped run divides by
    # the bytes of the documents it scored.
    n_bytes = tokens.val_bytes if complete and tokens.val_bytes else decoded_bytes
    doc_nats, doc_tokens = document_scores(model, docs, tokenizer.bos_id, seq_len, cfg.batch_size, device)
    items = bpb_items("val_bpb", text_ids(texts), doc_nats, [len(text.encode("utf-8")) for text in texts])
    stats = {"docs": len(docs), "docs_available": n_available, "tokens_available": n_total,
             "decoded_bytes": decoded_bytes, "complete": complete}
    metrics = nll_metrics(float(doc_nats.sum()), int(doc_tokens.sum()), n_bytes, "val")
    return metrics, texts_fingerprint(texts), stats, texts, items


def texts_fingerprint(texts: list[str]) -> str:
    """Identifies a set of scored documents by their text, whatever the tokenizer that read them."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:16]


def read_text_docs(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"evaluate.text_files: {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise ValueError(f"{path}: Parquet file needs a 'text' column, has {table.column_names}")
        return [t for t in table.column("text").to_pylist() if t]
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [path.read_text(encoding="utf-8")]


def text_file_metrics(model: Any, tokenizer: Any, path: Path, seq_len: int, cfg: EvalConfig, device: str,
                      prefix: str | None = None, n_bytes: int | None = None):
    """{prefix}_* metrics of the documents in `path`, its fingerprint, and the per-document bits behind `_bpb`."""
    docs = read_text_docs(path)
    if not docs:
        raise ValueError(f"evaluate.text_files: {path} holds no documents")
    encoded = [np.array([tokenizer.bos_id, *tokenizer.encode(doc)], dtype=np.int64) for doc in docs]
    doc_nats, doc_tokens = document_scores(model, encoded, tokenizer.bos_id, seq_len, cfg.batch_size, device)
    doc_bytes = [len(doc.encode("utf-8")) for doc in docs]
    prefix = prefix or f"text/{path.stem}"
    metrics = nll_metrics(float(doc_nats.sum()), int(doc_tokens.sum()), n_bytes or sum(doc_bytes), prefix)
    items = bpb_items(f"{prefix}_bpb", text_ids(docs), doc_nats, doc_bytes)
    return metrics, hashlib.sha256(path.read_bytes()).hexdigest()[:16], items
