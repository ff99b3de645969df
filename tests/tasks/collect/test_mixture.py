"""run_mix: local datasets (Parquet in the hub's layout, JSON Lines) mixed into the crawl at weights, deterministically,
with their provenance in the `source` column through curation into the Parquet shards and in the dataset card; bad
input named by file and column."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curate_data import doc_row, english, write_docset

from tasks.collect.mixture import LocalDatasetConfig, MixtureConfig, MixtureError, run_mix
from tasks.core.artifacts import file_sha256
from tasks.core.schema import DOC_SCHEMA, SHARD_SCHEMA

CRAWL_SEEDS = [0, 1, 3, 4]  # english(2) trips Gopher's duplicated 5-gram rule


def crawl_docs(root: Path):
    return write_docset([doc_row(english(s), f"http://site.test/p{s}.html") for s in CRAWL_SEEDS], root / "crawl")


def hub_parquet(root: Path, n: int = 24) -> Path:
    """A hub-style dataset on disk: data/train-0000X-of-00002.parquet with `content`, `doc_id` and `link` columns."""
    (root / "data").mkdir(parents=True)
    rows = [{"content": english(100 + i), "doc_id": f"w{i}", "link": f"https://wiki.test/{i}"} for i in range(n)]
    for part in range(2):
        pq.write_table(pa.Table.from_pylist(rows[part::2]), root / "data" / f"train-{part:05d}-of-00002.parquet")
    return root


def jsonl_dataset(path: Path, n: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": english(200 + i), "meta": {"i": i}}) + "\n" for i in range(n))
    return path


def table_of(docs) -> pa.Table:
    return pa.concat_tables([pq.read_table(docs.dir / f) for f in docs.files])


def test_datasets_are_mixed_at_their_weight_deterministically_with_provenance(tmp_path: Path):
    crawl = crawl_docs(tmp_path)
    wiki = LocalDatasetConfig(name="wiki", paths=[str(hub_parquet(tmp_path / "wiki"))], text_column="content",
                              id_column="doc_id", url_column="link", weight=0.5, license="cc-by-sa-4.0")
    notes = LocalDatasetConfig(name="notes", paths=[str(jsonl_dataset(tmp_path / "notes" / "part.jsonl.gz"))],
                               weight=None)
    cfg = MixtureConfig(datasets=[wiki, notes], seed=3)
    mixed = run_mix(cfg, crawl, tmp_path / "mix")

    table = table_of(mixed)
    assert table.schema == DOC_SCHEMA
    sources = table.column("source").to_pylist()
    assert sources.count("crawl") == len(CRAWL_SEEDS) and sources.count("notes") == 6  # None: every row
    crawl_bytes = sum(len(english(s).encode()) for s in CRAWL_SEEDS)
    wiki_rows = [r for r in table.to_pylist() if r["source"] == "wiki"]
    wiki_bytes = sorted(len(r["text"].encode()) for r in wiki_rows)
    # the smallest prefix (in seeded-hash order) that reaches half the crawl's bytes: fewer rows would fall short
    assert sum(wiki_bytes) >= 0.5 * crawl_bytes > sum(wiki_bytes) - max(wiki_bytes)
    assert 0 < len(wiki_rows) < 24 and all(r["url"].startswith("https://wiki.test/") for r in wiki_rows)
    assert {r["warc_record_id"].split("#")[0] for r in wiki_rows} <= {"train-00000-of-00002.parquet",
                                                                     "train-00001-of-00002.parquet"}
    assert mixed.n_docs == table.num_rows == len(set(table.column("id").to_pylist()))

    # lineage: every source with its weight, counts and its files' sha256
    record = {s.name: s for s in mixed.sources}
    assert list(record) == ["crawl", "wiki", "notes"]
    assert record["wiki"].documents == len(wiki_rows) and record["wiki"].license == "cc-by-sa-4.0"
    assert {Path(f.path).name: f.sha256 for f in record["wiki"].files} == {
        p.name: file_sha256(p) for p in (tmp_path / "wiki" / "data").iterdir()}
    assert mixed.manifest()["stats"]["sources"]["wiki"]["short"] is False

    # same config → same bytes; a larger weight takes a superset of the rows
    again = run_mix(cfg, crawl, tmp_path / "again")
    assert [file_sha256(again.dir / f) for f in again.files] == [file_sha256(mixed.dir / f) for f in mixed.files]
    more = run_mix(cfg.model_copy(update={"datasets": [wiki.model_copy(update={"weight": 1.5})]}), crawl,
                   tmp_path / "more")
    more_ids = {r["id"] for r in table_of(more).to_pylist() if r["source"] == "wiki"}
    assert {r["id"] for r in wiki_rows} < more_ids
    # a weight beyond what the dataset holds takes it whole and says so
    whole = run_mix(cfg.model_copy(update={"datasets": [wiki.model_copy(update={"weight": 100.0})]}), crawl,
                    tmp_path / "whole")
    stats = whole.manifest()["stats"]["sources"]["wiki"]
    assert (stats["rows_taken"], stats["short"]) == (24, True)


def test_provenance_reaches_the_parquet_shards_and_the_dataset_card(tmp_path: Path):
    from tasks.curate.config import CurateConfig
    from tasks.curate.curate import run_curate
    from tasks.shard.shard import ShardConfig, run_shard

    crawl = crawl_docs(tmp_path)
    notes = LocalDatasetConfig(name="notes", paths=[str(jsonl_dataset(tmp_path / "notes.jsonl.gz", n=3))],
                               weight=None, license="cc0-1.0")
    mixed = run_mix(MixtureConfig(datasets=[notes]), crawl, tmp_path / "mix")
    curated = run_curate(CurateConfig(tasks=1, minhash=False, pii=False), mixed, tmp_path / "curate")
    shards = run_shard(ShardConfig(), curated, tmp_path / "shard")

    table = pa.concat_tables([pq.read_table(shards.dir / f) for f in shards.files])
    assert table.schema == SHARD_SCHEMA
    sources = table.column("source").to_pylist()
    counts = {name: sources.count(name) for name in set(sources)}
    assert counts == {"crawl": len(CRAWL_SEEDS), "notes": 3}
    assert shards.manifest()["stats"]["sources"] == counts
    card = (shards.dir / "DATASET_CARD.md").read_text()
    assert "| notes | jsonl | all | 3 | 3 | cc0-1.0 |" in card
    assert file_sha256(tmp_path / "notes.jsonl.gz") in card


def test_bad_input_is_named_by_file_and_column(tmp_path: Path):
    crawl = crawl_docs(tmp_path)
    wiki = hub_parquet(tmp_path / "wiki")
    wrong_column = LocalDatasetConfig(name="wiki", paths=[str(wiki)], text_column="body")
    with pytest.raises(MixtureError, match=r"train-00000-of-00002\.parquet has no column 'body'"):
        run_mix(MixtureConfig(datasets=[wrong_column]), crawl, tmp_path / "a")
    notes = jsonl_dataset(tmp_path / "notes.jsonl.gz")
    with pytest.raises(MixtureError, match=r"notes\.jsonl\.gz line 1 has no key 'body'"):
        run_mix(MixtureConfig(datasets=[LocalDatasetConfig(name="n", paths=[str(notes)], text_column="body")]),
                crawl, tmp_path / "b")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(MixtureError, match=r"cannot read .*broken\.parquet as Parquet"):
        run_mix(MixtureConfig(datasets=[LocalDatasetConfig(name="b", paths=[str(tmp_path / "broken.parquet")])]),
                crawl, tmp_path / "c")
    with pytest.raises(MixtureError, match="'nowhere/\\*.parquet' matches no"):
        run_mix(MixtureConfig(datasets=[LocalDatasetConfig(name="x", paths=["nowhere/*.parquet"])]), crawl,
                tmp_path / "d")
