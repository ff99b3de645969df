"""run_shard: size-targeted zstd shards with exactly SHARD_SCHEMA, deterministic bytes, a dataset card, a manifest."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curate_data import english

from tasks.core.artifacts import DocSet, file_sha256, finish_stage
from tasks.core.schema import SHARD_SCHEMA
from tasks.shard.shard import ShardConfig, run_shard


def curated_docset(out, n=12, language="en") -> DocSet:
    """A DocSet shaped like the curate stage's output, with per-step stats in its manifest."""
    rows = []
    for i in range(n):
        text = english(i) + (" Grüße, café." if i % 3 == 0 else "")  # non-ASCII: bytes != characters
        rows.append({
            "id": f"doc{i}", "text": text, "url": f"http://site{i % 2}.test/{i}", "domain": f"site{i % 2}.test",
            "crawl_date": f"2024-05-0{1 + i % 3}T12:00:00Z", "language": language, "language_score": 0.9,
            "quality_score": None, "minhash_cluster_size": 1, "token_count": len(text.split()),
            "source_warc": None, "source_record_id": None, "source": "crawl",
        })
    (out / "docs").mkdir(parents=True)
    files = []
    for part in range(2):
        name = f"docs/{part:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[part::2], schema=SHARD_SCHEMA), out / name)
        files.append(name)
    stats = {"docs_in": 20, "docs_out": n, "steps": {
        "language": {"docs_in": 20, "docs_out": n, "dropped": {"total": 20 - n, "lang_de": 20 - n}},
        "pii": {"docs_in": n, "docs_out": n, "pii_email": 2}}}
    return finish_stage(out, DocSet(path=str(out), files=files, n_docs=n), stats=stats, files=files)


def test_shards_have_the_schema_the_target_size_and_a_card(tmp_path):
    docs = curated_docset(tmp_path / "curated")
    ref = run_shard(ShardConfig(target_shard_bytes=4000, license_notes={"site0.test": "CC-BY-4.0"}), docs,
                    tmp_path / "shards")
    assert ref.files == [f"shard_{i:05d}.parquet" for i in range(len(ref.files))] and len(ref.files) > 2
    tables = [pq.read_table(ref.dir / f) for f in ref.files]
    assert all(t.schema == SHARD_SCHEMA for t in tables)
    assert pq.ParquetFile(ref.dir / ref.files[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    texts = [t for table in tables for t in table["text"].to_pylist()]
    assert ref.n_docs == len(texts) == 12 and ref.n_bytes == sum(len(t.encode()) for t in texts)
    sizes = [sum(len(t.encode()) for t in table["text"].to_pylist()) for table in tables]
    assert all(s >= 4000 for s in sizes[:-1]) and all(s - 4000 < 1700 for s in sizes)  # closed at the first doc past

    manifest = ref.manifest()
    assert [f["path"] for f in manifest["files"]] == [*ref.files, "DATASET_CARD.md"]
    assert manifest["stats"]["languages"] == {"en": 12}
    card = (ref.dir / "DATASET_CARD.md").read_text()
    for expected in ("## Sources", "2024-05-01T12:00:00Z and 2024-05-03T12:00:00Z", "| site0.test | 6 | CC-BY-4.0 |",
                     "| site1.test | 6 | unknown |", "lang_de: 8", "{'email': 2}", "## Known limitations",
                     "| language_score | float |"):
        assert expected in card, expected


def test_same_input_gives_byte_identical_shards(tmp_path):
    docs = curated_docset(tmp_path / "curated")
    a = run_shard(ShardConfig(target_shard_bytes=5000), docs, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".shard_00000.parquet.tmp").write_text("left by a killed run")
    b = run_shard(ShardConfig(target_shard_bytes=5000), docs, tmp_path / "b")
    assert [file_sha256(a.dir / f) for f in a.files] == [file_sha256(b.dir / f) for f in b.files]
    assert not (tmp_path / "b" / ".shard_00000.parquet.tmp").exists()


def test_input_without_the_shard_columns_is_refused_by_name(tmp_path):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["hello"]}), tmp_path / "in" / "x.parquet")
    docs = DocSet(path=str(tmp_path / "in"), files=["x.parquet"], n_docs=1)
    with pytest.raises(ValueError, match=r"x.parquet lacks columns .*'crawl_date'"):
        run_shard(ShardConfig(), docs, tmp_path / "out")
