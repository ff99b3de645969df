"""Tokenize stage: train a byte-level BPE tokenizer on the curated shards and encode them into llm.c token shards.

Documents split into train and val by a hash of their id (deterministic, independent of shard order). The tokenizer
is trained on train documents only, so val bytes-per-token measures compression on unseen text; a gate fails the
stage when it is below `min_bytes_per_token`. Each Parquet shard becomes `train_00000.bin` / `val_00000.bin` with
every document preceded by `<|bos|>`, documents in hash order (a deterministic shuffle); shards are encoded in
parallel worker processes.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.core import progress
from tasks.core.artifacts import ShardSet, TokenSet, finish_stage, load_done, reset_dir, stage_dir

TOKENIZER_FILE = "tokenizer.json"


class TokenizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vocab_size: int = Field(default=4096, description="BPE vocabulary size, special tokens included.")
    val_fraction: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="Share of documents held out for validation (by id hash)."
    )
    min_frequency: int = Field(default=2, ge=1, description="A BPE merge must occur this often in the training text.")
    tokenizer_train_bytes: int = Field(
        default=200_000_000, description="At most this many UTF-8 bytes of train text are used to train the BPE."
    )
    min_bytes_per_token: float = Field(
        default=1.5, ge=0.0, description="Gate: fail when val compression (UTF-8 bytes per token) is below this."
    )
    workers: int = Field(
        default=0, ge=0, description="Encoding processes; 0 = one per CPU core (at most one per shard)."
    )
    split_seed: str = Field(default="lmforge", description="Salt of the train/val document hash; change to re-split.")
    tokenizer_file: str | None = Field(
        default=None,
        description="Encode with this existing tokenizer.json instead of training one (continued pretraining keeps "
        "the champion's vocabulary); vocab_size is then the file's.",
    )


def _doc_hash(doc_id: str, cfg: TokenizeConfig) -> bytes:
    return hashlib.sha256(f"{cfg.split_seed}:{doc_id}".encode()).digest()


def is_val(doc_id: str, cfg: TokenizeConfig) -> bool:
    return int.from_bytes(_doc_hash(doc_id, cfg)[:8], "big") / 2**64 < cfg.val_fraction


def _goes_to_val(doc_id: str, cfg: TokenizeConfig, flipped: str) -> bool:
    """`is_val`, except for the one document `run_tokenize` moved to the other side."""
    return is_val(doc_id, cfg) != (doc_id == flipped)


def _read_shard(path: Path) -> tuple[list[str], list[str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["id", "text"])
    except (OSError, KeyError) as err:
        raise ValueError(f"cannot read columns id,text from shard {path}: {err}") from err
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def _encode_shard(args: tuple[Path, Path, int, dict, Path, str]) -> dict[str, int]:
    """Encode one Parquet shard into train/val `.bin` files; runs in a worker process."""
    from models.text.tokenizer import Tokenizer
    from tasks.core.tokens import write_bin

    shard, tokenizer_file, index, cfg_dict, out, flipped = args
    cfg = TokenizeConfig.model_validate(cfg_dict)
    tok = Tokenizer.load(tokenizer_file)
    ids, texts = _read_shard(shard)
    # Documents in hash order, not shard order: the trainer walks the .bin sequentially, and shards keep URL order
    # (whole site sections in a row), which would feed it one topic at a time.
    order = sorted(range(len(ids)), key=lambda i: _doc_hash(ids[i], cfg))
    ids, texts = [ids[i] for i in order], [texts[i] for i in order]
    stats = {"train_tokens": 0, "val_tokens": 0, "train_docs": 0, "val_docs": 0, "val_bytes": 0, "train_bytes": 0}
    split: dict[str, list[int]] = {"train": [], "val": []}
    for start in range(0, len(texts), 256):  # batches keep memory flat and let tokenizers use its threads
        batch_ids, batch_texts = ids[start : start + 256], texts[start : start + 256]
        for doc_id, text, enc in zip(batch_ids, batch_texts, tok.encode_batch(batch_texts)):
            name = "val" if _goes_to_val(doc_id, cfg, flipped) else "train"
            split[name].append(tok.bos_id)
            split[name].extend(enc)
            stats[f"{name}_docs"] += 1
            stats[f"{name}_bytes"] += len(text.encode("utf-8"))
    for name, tokens in split.items():
        stats[f"{name}_tokens"] = len(tokens)
        if tokens:
            write_bin(out / f"{name}_{index:05d}.bin", tokens, vocab_size=tok.vocab_size)
    return stats


def _train_texts(shard_paths: list[Path], cfg: TokenizeConfig, flipped: str):
    budget = cfg.tokenizer_train_bytes
    for path in shard_paths:
        ids, texts = _read_shard(path)
        for doc_id, text in zip(ids, texts):
            if _goes_to_val(doc_id, cfg, flipped):
                continue
            budget -= len(text.encode("utf-8"))
            if budget < 0:
                return
            yield text


def run_tokenize(cfg: TokenizeConfig, shards: ShardSet, out: Path) -> TokenSet:
    from models.text.tokenizer import Tokenizer

    t0 = time.time()
    reset_dir(out)  # leftovers of a killed run: encoding is cheap enough to redo from scratch
    shard_paths = [shards.dir / f for f in shards.files]
    if not shard_paths:
        raise ValueError(f"shard set {shards.path} lists no shards; did curation keep any documents?")
    all_ids = [doc_id for path in shard_paths for doc_id in _read_shard(path)[0]]
    # A tiny corpus (a retrain's few new documents) may hash no document into val, or all of them; then one document
    # switches sides: the lowest-hash one goes to val, so val is never empty unless that would leave nothing to train
    # on, or the highest-hash one goes to train, so there is always something to train on.
    flipped = ""
    in_val = [is_val(i, cfg) for i in all_ids]
    if cfg.val_fraction > 0 and len(all_ids) > 1 and not any(in_val):
        flipped = min(all_ids, key=lambda i: _doc_hash(i, cfg))
    elif all_ids and all(in_val):
        flipped = max(all_ids, key=lambda i: _doc_hash(i, cfg))

    t_train = time.time()
    note = "loading the base tokenizer" if cfg.tokenizer_file else "training the BPE tokenizer"
    progress.update("tokenize", done=0, total=len(all_ids), unit="docs", note=note)
    if cfg.tokenizer_file is not None:
        if not Path(cfg.tokenizer_file).is_file():
            raise FileNotFoundError(f"tokenize.tokenizer_file {cfg.tokenizer_file} does not exist")
        tok = Tokenizer.load(cfg.tokenizer_file)
    else:
        tok = Tokenizer.train(_train_texts(shard_paths, cfg, flipped), cfg.vocab_size, cfg.min_frequency)
    tok.save(out / TOKENIZER_FILE)
    t_train = time.time() - t_train

    t_enc = time.time()
    jobs = [(p, out / TOKENIZER_FILE, i, cfg.model_dump(), out, flipped) for i, p in enumerate(shard_paths)]
    n_docs = 0

    def encoded(stats: dict[str, int]) -> dict[str, int]:  # one shard done: the console's live line
        nonlocal n_docs
        n_docs += stats["train_docs"] + stats["val_docs"]
        progress.update("tokenize", done=n_docs, total=len(all_ids), unit="docs", note="encoding")
        return stats

    workers = min(cfg.workers or os.cpu_count() or 1, len(jobs))
    if workers > 1:
        import multiprocessing

        # spawn, not fork: the tokenizer's Rust thread pool is already running in this process
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            per_shard = [encoded(stats) for stats in pool.map(_encode_shard, jobs)]
    else:
        per_shard = [encoded(_encode_shard(job)) for job in jobs]
    t_enc = time.time() - t_enc

    totals = {key: sum(s[key] for s in per_shard) for key in per_shard[0]}
    train_files = sorted(p.name for p in out.glob("train_*.bin"))
    val_files = sorted(p.name for p in out.glob("val_*.bin"))
    if not train_files:
        raise ValueError(f"no train documents in {shards.path}: lower tokenize.val_fraction ({cfg.val_fraction})")
    # bos separators are not text: compression counts only the tokens that encode the val documents' bytes
    val_text_tokens = totals["val_tokens"] - totals["val_docs"]
    bytes_per_token = totals["val_bytes"] / val_text_tokens if val_text_tokens else 0.0
    if val_text_tokens and bytes_per_token < cfg.min_bytes_per_token:
        raise ValueError(
            f"tokenizer compresses val text to {bytes_per_token:.2f} bytes/token, below the gate "
            f"tokenize.min_bytes_per_token={cfg.min_bytes_per_token}: raise vocab_size or lower the gate"
        )
    ref = TokenSet(
        path=str(out),
        tokenizer_file=TOKENIZER_FILE,
        vocab_size=tok.vocab_size,
        train_files=train_files,
        val_files=val_files,
        n_train_tokens=totals["train_tokens"],
        n_val_tokens=totals["val_tokens"],
        val_bytes=totals["val_bytes"],
    )
    stats = {
        **{key: value for key, value in totals.items()},
        "vocab_size": tok.vocab_size,
        "bytes_per_token": {"val": round(bytes_per_token, 4)},
        "seconds": {"train_tokenizer": round(t_train, 3), "encode": round(t_enc, 3)},
        "workers": workers,
    }
    return finish_stage(out, ref, config=cfg, entry=run_tokenize,
                        stats=stats, files=[TOKENIZER_FILE, *train_files, *val_files], started=t0)


@task(name="tokenize", retries=1)
def tokenize(cfg: TokenizeConfig, shards: ShardSet) -> TokenSet:
    out = stage_dir("tokenize", cfg, shards, entry=run_tokenize)
    return load_done(out, TokenSet) or run_tokenize(cfg, shards, out)
