"""The data stages are a function of the crawl snapshot and the config: curate → shard → tokenize, run twice on the
same documents in another order (fetch completion order), cut into another number of crawl files and with other
worker counts, write byte-identical data files. Manifests differ (finish times, durations): only data is compared."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from curate_data import doc_row, edit, english, write_docset

from tasks.core.artifacts import StageRef, declared_files, file_sha256
from tasks.curate.config import CurateConfig
from tasks.curate.curate import run_curate
from tasks.shard.shard import ShardConfig, run_shard
from tasks.tokenize.tokenize import TokenizeConfig, run_tokenize


def snapshot() -> list[dict]:
    """A crawl snapshot with an exact and a near-duplicate pair, fetched at distinct times."""
    rows = [doc_row(english(s), f"http://site.test/p{s:02d}.html") for s in range(3, 25)]
    rows += [doc_row(english(3), "http://site.test/mirror/p03.html"),
             doc_row(edit(english(4), 0.01, seed=7), "http://site.test/mirror/p04.html")]
    for i, row in enumerate(rows):
        row["fetch_time"] = f"2024-05-01T12:{i // 60:02d}:{i % 60:02d}Z"
    return rows


def data_hashes(*refs: StageRef) -> dict[str, str]:
    """sha256 of every data file the stages wrote (their declared files and the dataset card), by stage/file."""
    found = {}
    for ref in refs:
        names = declared_files(ref) + (["DATASET_CARD.md"] if (ref.dir / "DATASET_CARD.md").is_file() else [])
        found.update({f"{ref.dir.name}/{name}": file_sha256(ref.dir / name) for name in names})
    return found


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_same_snapshot_gives_identical_data_whatever_the_fetch_order(tmp_path: Path):
    runs = []
    for run, (seed, n_files, workers) in enumerate([(1, 1, 1), (2, 3, 2)]):
        base = tmp_path / f"run{run}"
        rows = random.Random(seed).sample(snapshot(), len(snapshot()))  # the order fetches happened to finish in
        docs = write_docset(rows, base / "crawl", n_files=n_files)
        curated = run_curate(CurateConfig(tasks=2, workers=workers, cross_run_dedup=False), docs, base / "curate")
        shards = run_shard(ShardConfig(target_shard_bytes=4000), curated, base / "shard")
        tokens = run_tokenize(TokenizeConfig(vocab_size=400, val_fraction=0.2, workers=workers), shards,
                              base / "tokenize")
        runs.append((data_hashes(curated, shards, tokens), curated))

    (first, curated), (second, _) = runs
    assert first == second
    assert len(shards.files) > 1 and tokens.train_files and tokens.val_files
    # the kept member of each duplicate pair is the first by URL, whichever copy was fetched first
    kept = {row["url"] for name in curated.files for row in pq_rows(curated.dir / name)}
    assert {"http://site.test/mirror/p03.html", "http://site.test/mirror/p04.html"} <= kept
    assert not {"http://site.test/p03.html", "http://site.test/p04.html"} & kept


def pq_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
