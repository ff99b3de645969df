"""Tiny curated shards and token sets for the tokenize and train tests, built in-process (seeded, deterministic)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.artifacts import ShardSet
from tasks.core.schema import SHARD_SCHEMA

WORDS = ["the", "a", "river", "garden", "teacher", "window", "village", "market", "engine", "library", "harbour", "mountain", "letter", "kitchen", "station", "forest", "painter", "island", "bridge", "carries", "builds", "watches", "follows", "repairs", "opens", "visits", "quiet", "old", "bright", "narrow", "gentle", "busy", "and", "of", "to", "in", "with", "at", "by"]


def synthetic_docs(n_docs: int, seed: int = 0, words_per_doc: int = 120) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        sentences = []
        for _ in range(words_per_doc // 8):
            words = [rng.choice(WORDS) for _ in range(rng.randint(5, 10))]
            sentences.append(" ".join(words).capitalize() + ".")
        docs.append(f"Document {i}. " + " ".join(sentences))
    return docs


def write_shards(root: Path, docs_per_shard: list[list[str]]) -> ShardSet:
    """Parquet shards with the curated schema at root/shard_00000.parquet …"""
    root.mkdir(parents=True, exist_ok=True)
    files, n_bytes, n_docs = [], 0, 0
    for index, docs in enumerate(docs_per_shard):
        rows = {
            "id": [f"doc-{index}-{i}" for i in range(len(docs))],
            "text": docs,
            "url": [f"http://127.0.0.1/{index}/{i}" for i in range(len(docs))],
            "domain": ["127.0.0.1"] * len(docs),
            "crawl_date": ["2024-01-01T00:00:00Z"] * len(docs),
            "language": ["en"] * len(docs),
            "language_score": [0.99] * len(docs),
            "quality_score": [None] * len(docs),
            "minhash_cluster_size": [1] * len(docs),
            "token_count": [len(d.split()) for d in docs],
            "source_warc": [None] * len(docs),
            "source_record_id": [None] * len(docs),
            "source": ["crawl"] * len(docs),
        }
        name = f"shard_{index:05d}.parquet"
        pq.write_table(pa.Table.from_pydict(rows, schema=SHARD_SCHEMA), root / name, compression="zstd")
        files.append(name)
        n_docs += len(docs)
        n_bytes += sum(len(d.encode()) for d in docs)
    return ShardSet(path=str(root), files=files, n_docs=n_docs, n_bytes=n_bytes)


def make_token_set(root: Path, n_docs: int = 200, vocab_size: int = 512, n_shards: int = 2):
    """Shards of synthetic text, tokenized by the real tokenize stage (single worker: fast in tests)."""
    from tasks.tokenize.tokenize import TokenizeConfig, run_tokenize

    docs = synthetic_docs(n_docs)
    per = (n_docs + n_shards - 1) // n_shards
    shards = write_shards(root / "shards", [docs[i : i + per] for i in range(0, n_docs, per)])
    cfg = TokenizeConfig(vocab_size=vocab_size, val_fraction=0.1, workers=1, min_bytes_per_token=0.0)
    return run_tokenize(cfg, shards, root / "tokens")


TINY_MODEL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_kv_head": 1, "seq_len": 32}


def tiny_train_config(**overrides):
    """A TrainConfig for a 2-layer, 32-wide model on these token sets: a run takes seconds on one thread."""
    from models.architectures.registry import ModelConfig
    from tasks.train.train import TrainConfig

    base = dict(
        model=ModelConfig(**TINY_MODEL),
        max_steps=12,
        batch_size=4,
        warmup_steps=2,
        checkpoint_every=4,
        eval_every=6,
        eval_batches=2,
        log_every=2,
        progress=False,
        threads=1,
    )
    return TrainConfig(**{**base, **overrides})
