"""The shard stage: curated documents → `shard_00000.parquet …` (zstd, `tasks.core.schema.SHARD_SCHEMA`) + a dataset card.

Input is the curate stage's `DocSet` (Parquet files with the SHARD_SCHEMA columns). Rows keep their input order
(curate's, `tasks.curate.curate.CURATION_ORDER`, whatever order the crawl fetched in), a shard is closed once its text
reaches `target_shard_bytes`, and Parquet carries no timestamps (`created_by` names the pyarrow version), so the same
input always gives byte-identical shards. Each shard is written under a temporary name and renamed;
`DATASET_CARD.md` (sources, dates, counts per curation step, languages, licences as known, limitations) goes beside
the shards, and `manifest.json` (shards, row counts, checksums) last.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.artifacts import DocSet, ShardSet, finish_stage, load_done, reset_dir, stage_dir
from tasks.core.schema import SHARD_SCHEMA


class ShardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_shard_bytes: int = Field(
        default=64 * 2**20, ge=1, description="Close a shard once its UTF-8 text reaches this many bytes."
    )
    compression_level: int = Field(default=3, ge=1, le=22, description="zstd level of the Parquet shards.")
    row_group_rows: int = Field(default=1000, ge=1, description="Rows per Parquet row group.")
    card_title: str = Field(default="lmforge curated web corpus", description="Title of DATASET_CARD.md.")
    license_notes: dict[str, str] = Field(
        default_factory=dict, description="Licence as known per domain, for the dataset card, e.g. {'docs.python.org': "
        "'PSF-2.0'}; unlisted domains are reported as unknown."
    )
    limitations: list[str] = Field(default_factory=list, description="Extra known limitations for the dataset card.")


def _read_curated(docs: DocSet):
    """Yield each curated file as a table with exactly SHARD_SCHEMA, naming the file when columns are missing."""
    import pyarrow.parquet as pq

    for name in docs.files:
        path = docs.dir / name
        table = pq.read_table(path)
        missing = set(SHARD_SCHEMA.names) - set(table.column_names)
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)}: shard expects the curate stage's output "
                             f"(tasks.core.schema.SHARD_SCHEMA)")
        yield table.select(SHARD_SCHEMA.names).cast(SHARD_SCHEMA)


def run_shard(cfg: ShardConfig, docs: DocSet, out: Path) -> ShardSet:
    """Write `docs` as size-targeted zstd Parquet shards plus DATASET_CARD.md into `out`; return their ShardSet."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tasks.shard.dataset_card import write_dataset_card

    t0 = time.time()
    reset_dir(out)  # sharding is cheap and sequential: a killed run restarts rather than resumes
    files: list[str] = []
    rows_per_file: list[int] = []
    pending: list[pa.Table] = []
    pending_bytes = n_bytes = n_tokens = 0
    languages: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    dates: list[str] = []

    def flush() -> None:
        nonlocal pending, pending_bytes
        if not pending:
            return
        table = pa.concat_tables(pending)
        name = f"shard_{len(files):05d}.parquet"
        tmp = out / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd", compression_level=cfg.compression_level,
                       row_group_size=cfg.row_group_rows)
        os.replace(tmp, out / name)
        files.append(name)
        rows_per_file.append(table.num_rows)
        pending, pending_bytes = [], 0

    for table in _read_curated(docs):
        text_bytes = pc.binary_length(pc.cast(table["text"], pa.binary())).to_pylist()
        n_bytes += sum(text_bytes)
        n_tokens += int(pc.sum(table["token_count"]).as_py() or 0)
        languages.update(table["language"].to_pylist())
        domains.update(table["domain"].to_pylist())
        sources.update(table["source"].to_pylist())
        dates += [d for d in table["crawl_date"].to_pylist() if d]
        start = 0
        for i, size in enumerate(text_bytes):  # cut rows so each shard closes at the first row past the target
            pending_bytes += size
            if pending_bytes >= cfg.target_shard_bytes:
                pending.append(table.slice(start, i + 1 - start))
                start = i + 1
                flush()
        if start < table.num_rows:
            pending.append(table.slice(start))
    flush()

    n_docs = sum(rows_per_file)
    stats = {"n_shards": len(files), "n_docs": n_docs, "n_bytes": n_bytes, "n_tokens": n_tokens,
             "languages": dict(languages),
             "sources": dict(sorted(sources.items())), "rows_per_shard": {f"{i:05d}": n for i, n in enumerate(rows_per_file)}}
    write_dataset_card(out / "DATASET_CARD.md", cfg, docs, stats, domains,
                       (min(dates), max(dates)) if dates else ("", ""))
    ref = ShardSet(path=str(out), files=files, n_docs=n_docs, n_bytes=n_bytes, sources=docs.sources)
    return finish_stage(out, ref, config=cfg, entry=run_shard,
                        stats=stats, files=[*files, "DATASET_CARD.md"], started=t0)


@task(name="shard", retries=1)
def shard(cfg: ShardConfig, docs: DocSet) -> ShardSet:
    out = stage_dir("shard", cfg, docs, entry=run_shard)
    return load_done(out, ShardSet) or run_shard(cfg, docs, out)
