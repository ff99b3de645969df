"""The curate stage: FineWeb-grade filtering, deduplication and PII scrubbing of crawled documents, with datatrove.

`run_curate(cfg, docs, out)` runs these datatrove pipelines in order (each resumable through datatrove's completion
markers under `out/logs/<pipeline>/`):
1. `filter`: [decontamination against eval files →] URL blocklist → language ID (fasttext lid.176) → Gopher repetition → Gopher quality → C4 quality
   [→ C4 bad words] → FineWeb quality → toxicity (bad-word density) [→ fasttext quality score] → exact-dedup hashes;
2. `exact_find`, 3. `exact_filter` (+ quality threshold, MinHash signatures), 4. `minhash_buckets` (also against the
   index of earlier runs under `$LMFORGE_HOME/dedup-index/`), 5. `minhash_cluster`;
6. `final`: MinHash filter → PII scrubber → `out/docs/NNNNN.parquet`.

Output (the curate → shard interface): `DocSet` whose files are `docs/NNNNN.parquet` (one per task) with exactly the
columns of `tasks.core.schema.SHARD_SCHEMA`. Every filter writes its rejects to `out/removed/<step>/NNNNN.jsonl.gz` with
the drop reason in `metadata.filter_reason`. Stats per step: docs in/out, drop reasons, tokens (whitespace words).

Documents are read sorted by URL (`CURATION_ORDER`), so which copy of a duplicate survives, and every output byte,
follow from the documents and the config, not from the order the crawl's fetches finished in.

Defaults follow FineWeb. `profile="docs"` relaxes the heuristics that drop code-heavy documentation (see `tasks.curate.config.PROFILES`).
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import task

from tasks.core.artifacts import DocSet, StageRef, file_sha256, finish_stage, lmforge_home, load_done, stage_dir
from tasks.curate.config import CurateConfig, decontamination_file


# The order curation reads documents in: by URL, then the earliest fetch of that URL, then the body's hash. Dedup keeps
# one member of each duplicate cluster by position (the first of an exact-duplicate pair, the cluster's root for
# MinHash), and the crawl writes documents in the order their fetches finished, so without this order the kept copy,
# and every output file after it, would change from run to run. The URL comes first, not the fetch time: a fetch time
# is itself the outcome of that race between fetches, so a recrawl of the same site would still keep other copies;
# a URL is a property of the page. Among equal URLs (WARC ingest of several crawls) the earliest fetch wins.
CURATION_ORDER = [("url", "ascending"), ("fetch_time", "ascending"), ("content_hash", "ascending")]


def split_input(docs: DocSet, n: int, dest: Path) -> int:
    """Sort the input into `CURATION_ORDER` and cut it into `n` Parquet files so every datatrove task has work
    (readers shard by file): the same documents give the same files whatever order and files the crawl wrote."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(docs.dir / f) for f in docs.files]) if docs.files else None
    table = table.sort_by(CURATION_ORDER) if table is not None else None
    dest.mkdir(parents=True, exist_ok=True)
    rows = 0 if table is None else table.num_rows
    for i in range(n):
        lo, hi = rows * i // n, rows * (i + 1) // n
        part = table.slice(lo, hi - lo) if table is not None else None
        if part is not None:
            pq.write_table(part, dest / f"{i:05d}.parquet")
    return rows


def run_curate(cfg: CurateConfig, docs: DocSet, out: Path) -> DocSet:
    """Filter, deduplicate and scrub `docs` into `out/docs/*.parquet` (SHARD_SCHEMA columns); see module doc."""
    from tasks.curate.pipeline import build_and_run

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    for name in (cfg.lid_model_path, cfg.quality_model_path, *cfg.url_blocklist_files, *eval_files(cfg)):
        if name and not Path(name).is_file():
            raise FileNotFoundError(f"curate config names {name}, which does not exist")
    n_in = split_input(docs, cfg.tasks, out / "work" / "input")
    stats = build_and_run(cfg, out, n_in, index_root=Path(cfg.dedup_index_dir or lmforge_home() / "dedup-index"))
    files = sorted(p.relative_to(out).as_posix() for p in (out / "docs").glob("*.parquet"))
    ref = DocSet(path=str(out), files=files, n_docs=int(stats["docs_out"]), sources=docs.sources)
    return finish_stage(out, ref, config=cfg, entry=run_curate, stats=stats, files=files, started=t0)


def eval_files(cfg: CurateConfig) -> list[str]:
    return [decontamination_file(entry)[1] for entry in cfg.decontaminate]


@task(name="curate", retries=1)
def curate(cfg: CurateConfig, docs: DocSet) -> DocSet:
    # the eval files' bytes key the output too: a new version of a benchmark file decontaminates again
    files = [StageRef(path=name, manifest_sha256=file_sha256(Path(name))) for name in eval_files(cfg)]
    out = stage_dir("curate", cfg, docs, *files, entry=run_curate)
    return load_done(out, DocSet) or run_curate(cfg, docs, out)
