"""The mix stage: local datasets (Parquet or JSONL files with a text column, the layout of datasets published on the
Hugging Face hub, read from disk) mixed into the crawl's documents at configured weights.

`run_mix(cfg, docs, out) -> DocSet` writes the crawl's documents (tagged `source="crawl"`) and each dataset's sampled
rows (tagged with the dataset's name) as `docs/docs_*.parquet` in `DOC_SCHEMA`, so curation treats them like crawled
pages. A dataset's `weight` is UTF-8 bytes of its text per byte of crawled text: rows are taken in the order of a
seeded hash of their id until the dataset's share is reached, so the selection is deterministic, does not depend on
file order, and a larger weight takes a superset of a smaller one's rows. A dataset smaller than its share is taken
whole (`short` in the stats). The DocSet's `sources` list each source with its files' sha256 (the lineage the dataset
card and the MLflow run show).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from prefect import task
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.core.artifacts import DocSet, SourceFile, SourceRecord, file_sha256, finish_stage, load_done, reset_dir, stage_dir

CRAWL_SOURCE = "crawl"
FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".jsonl.gz": "jsonl", ".json.gz": "jsonl"}
ROWS_PER_PART = 10_000  # rows per output Parquet part: bounded memory whatever the dataset size


class MixtureError(ValueError):
    """A dataset of the mixture cannot be read as configured (missing file or column, unreadable file)."""


class LocalDatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Source name, kept in every document's `source` column and in the dataset card.")
    paths: list[str] = Field(description="Files, globs or directories (searched recursively) of .parquet, .jsonl, "
                             ".jsonl.gz or .json (JSON Lines) files, e.g. a hub dataset's `data/` folder.")
    text_column: str = Field(default="text", description="Column (JSON key) holding the document text.")
    id_column: str | None = Field(default=None, description="Column with a stable row id; default: file name and "
                                  "row number.")
    url_column: str | None = Field(default=None, description="Column with the document's URL, if the dataset has one; "
                                   "default: dataset://<name>/<id>.")
    weight: float | None = Field(default=1.0, ge=0, description="UTF-8 bytes of this dataset's text per byte of "
                                 "crawled text (0.5: half as much as the crawl); None = every row.")
    license: str = Field(default="unknown", description="The dataset's licence, for the dataset card.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not name or name == CRAWL_SOURCE or any(c in name for c in "/ \t\n"):
            raise ValueError(f"dataset name {name!r} must be non-empty, without '/' or spaces, and not {CRAWL_SOURCE!r}")
        return name


class MixtureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    datasets: list[LocalDatasetConfig] = Field(default_factory=list, description="Local datasets mixed into the "
                                               "crawl; [] = the crawl alone (no mix stage).")
    seed: int = Field(default=0, description="Seed of the row sampling (a hash of seed, dataset name and row id).")

    @field_validator("datasets")
    @classmethod
    def _unique_names(cls, datasets: list[LocalDatasetConfig]) -> list[LocalDatasetConfig]:
        names = [d.name for d in datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"mixture.datasets: names must be unique, got {names}")
        return datasets


def dataset_files(ds: LocalDatasetConfig) -> list[Path]:
    """The dataset's data files, sorted; a path matching nothing is an error naming it."""
    files: list[Path] = []
    for pattern in ds.paths:
        path = Path(pattern).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and file_format(p) is not None)
        else:
            found = sorted(Path(m) for m in glob.glob(str(path), recursive=True) if Path(m).is_file())
        if not found:
            raise MixtureError(f"mixture dataset {ds.name!r}: {pattern!r} matches no .parquet/.jsonl file")
        for f in found:
            if file_format(f) is None:
                raise MixtureError(f"mixture dataset {ds.name!r}: {f} is neither Parquet nor JSON Lines "
                                   f"({', '.join(FORMATS)})")
        files.extend(found)
    return sorted(set(files))


def file_format(path: Path) -> Literal["parquet", "jsonl"] | None:
    name = path.name.lower()
    for suffix, kind in sorted(FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return kind  # type: ignore[return-value]
    return None


def read_rows(ds: LocalDatasetConfig, path: Path) -> Iterator[tuple[str, str, str | None]]:
    """(row id, text, url) of each row of one file; a missing column or an unreadable file names both."""
    columns = [c for c in (ds.text_column, ds.id_column, ds.url_column) if c]
    if file_format(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise MixtureError(f"mixture dataset {ds.name!r}: cannot read {path} as Parquet ({exc})") from exc
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise MixtureError(f"mixture dataset {ds.name!r}: {path} has no column {missing[0]!r} (columns: "
                               f"{', '.join(parquet.schema_arrow.names)}); set text_column/id_column/url_column")
        row = 0
        for batch in parquet.iter_batches(columns=columns, batch_size=4096):
            data = batch.to_pydict()
            for i in range(batch.num_rows):
                yield _row(ds, path, row, {c: data[c][i] for c in columns})
                row += 1
        return
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as stream:
            for row, line in enumerate(stream):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MixtureError(f"mixture dataset {ds.name!r}: {path} line {row + 1} is not JSON ({exc})") from exc
                missing = [c for c in columns if not isinstance(record, dict) or c not in record]
                if missing:
                    raise MixtureError(f"mixture dataset {ds.name!r}: {path} line {row + 1} has no key {missing[0]!r}; "
                                       "set text_column/id_column/url_column")
                yield _row(ds, path, row, record)
    except (OSError, UnicodeDecodeError) as exc:
        raise MixtureError(f"mixture dataset {ds.name!r}: cannot read {path} as JSON Lines ({exc})") from exc


def _row(ds: LocalDatasetConfig, path: Path, row: int, record: dict[str, Any]) -> tuple[str, str, str | None]:
    text = record[ds.text_column]
    if not isinstance(text, str):
        raise MixtureError(f"mixture dataset {ds.name!r}: {path} row {row}: column {ds.text_column!r} holds "
                           f"{type(text).__name__}, not text")
    row_id = str(record[ds.id_column]) if ds.id_column else f"{path.name}:{row}"
    url = str(record[ds.url_column]) if ds.url_column and record[ds.url_column] else None
    return row_id, text, url


def sample_key(seed: int, name: str, row_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{name}:{row_id}".encode()).digest()[:8]


def select_rows(cfg: MixtureConfig, ds: LocalDatasetConfig, files: list[Path], target_bytes: float | None
                ) -> tuple[set[tuple[int, str]], dict[str, Any]]:
    """(file index, row id) of the rows to take, in seeded-hash order until `target_bytes` (None: all), and stats."""
    keyed = [(sample_key(cfg.seed, ds.name, row_id), len(text.encode("utf-8")), i, row_id)
             for i, path in enumerate(files) for row_id, text, _ in read_rows(ds, path)]
    keyed.sort()
    chosen: set[tuple[int, str]] = set()
    taken = 0
    for _, size, i, row_id in keyed:
        if target_bytes is not None and taken >= target_bytes:
            break
        chosen.add((i, row_id))
        taken += size
    available = sum(size for _, size, _, _ in keyed)
    short = target_bytes is not None and available < target_bytes
    return chosen, {"rows_available": len(keyed), "rows_taken": len(chosen), "bytes_available": available,
                    "bytes_taken": taken, "target_bytes": target_bytes, "short": short}


def dataset_row(ds: LocalDatasetConfig, row_id: str, text: str, url: str | None, record_id: str) -> dict[str, Any]:
    """One DOC_SCHEMA row for a dataset document: no fetch (http_status 0, no fetch time), its source named."""
    from urllib.parse import quote, urlsplit

    doc_url = url or f"dataset://{ds.name}/{quote(row_id, safe='')}"
    return {"id": hashlib.sha1(f"dataset:{ds.name}:{row_id}".encode()).hexdigest(), "text": text, "url": doc_url,
            "domain": urlsplit(doc_url).hostname or ds.name, "title": None, "author": None, "date": None,
            "fetch_time": "", "http_status": 0, "content_hash": hashlib.sha256(text.encode()).hexdigest(),
            "language_hint": None, "warc_file": None, "warc_record_id": record_id, "source": ds.name}


def run_mix(cfg: MixtureConfig, docs: DocSet, out: Path) -> DocSet:
    """The crawl's documents plus each dataset's sampled rows, as `out/docs/docs_*.parquet` (DOC_SCHEMA)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tasks.core.schema import DOC_SCHEMA

    t0 = time.time()
    reset_dir(out)
    (out / "docs").mkdir()
    parts: list[str] = []

    def write(table: pa.Table) -> None:
        name = f"docs/docs_{len(parts):05d}.parquet"
        tmp = out / f"docs/.docs_{len(parts):05d}.parquet.tmp"
        pq.write_table(table, tmp, compression="zstd")
        tmp.rename(out / name)
        parts.append(name)

    crawl_bytes = 0
    for name in docs.files:  # the crawl, tagged with its source
        table = pq.read_table(docs.dir / name)
        if "source" in table.column_names:
            table = table.drop_columns(["source"])
        table = table.append_column("source", pa.array([CRAWL_SOURCE] * table.num_rows, pa.string()))
        crawl_bytes += int(pc.sum(pc.binary_length(pc.cast(table["text"], pa.binary()))).as_py() or 0)
        write(table.select(DOC_SCHEMA.names).cast(DOC_SCHEMA))
    sources = [SourceRecord(name=CRAWL_SOURCE, kind="crawl", weight=1.0, documents=docs.n_docs, bytes=crawl_bytes,
                            files=[SourceFile(path=str(docs.dir / f), sha256=file_sha256(docs.dir / f))
                                   for f in docs.files])]
    stats: dict[str, Any] = {"crawl": {"documents": docs.n_docs, "bytes": crawl_bytes}}
    n_docs = docs.n_docs
    for ds in cfg.datasets:
        files = dataset_files(ds)
        target = None if ds.weight is None else ds.weight * crawl_bytes
        chosen, ds_stats = select_rows(cfg, ds, files, target)
        if ds_stats["short"]:
            print(f"mix: dataset {ds.name!r} holds {ds_stats['bytes_available']:,} bytes, less than its share "
                  f"({target:,.0f} bytes at weight {ds.weight}); all of it is used")
        rows: list[dict[str, Any]] = []
        for i, path in enumerate(files):
            for row_id, text, url in read_rows(ds, path):
                if (i, row_id) in chosen:
                    rows.append(dataset_row(ds, row_id, text, url, f"{path.name}#{row_id}"))
                    if len(rows) >= ROWS_PER_PART:
                        write(pa.Table.from_pylist(rows, schema=DOC_SCHEMA))
                        rows = []
        if rows:
            write(pa.Table.from_pylist(rows, schema=DOC_SCHEMA))
        n_docs += ds_stats["rows_taken"]
        stats[ds.name] = ds_stats
        sources.append(SourceRecord(name=ds.name, kind=file_format(files[0]) or "", weight=ds.weight,
                                    documents=ds_stats["rows_taken"], bytes=ds_stats["bytes_taken"], license=ds.license,
                                    files=[SourceFile(path=str(p.resolve()), sha256=file_sha256(p)) for p in files]))
    ref = DocSet(path=str(out), files=parts, n_docs=n_docs, sources=sources)
    return finish_stage(out, ref, config=cfg, entry=run_mix,
                        stats={"n_docs": n_docs, "sources": stats}, files=parts, started=t0)


class MixtureKey(BaseModel):
    """What the mix stage's directory is keyed by: its config and each data file's size and modification time, so a
    dataset edited in place is mixed again (hashing every byte is left to the run itself, for the lineage)."""

    model_config = ConfigDict(extra="forbid")
    config: MixtureConfig
    files: dict[str, list[tuple[str, int, int]]]


def mixture_key(cfg: MixtureConfig) -> MixtureKey:
    files = {}
    for ds in cfg.datasets:
        files[ds.name] = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in dataset_files(ds)]
    return MixtureKey(config=cfg, files=files)


@task(name="mix", retries=1)
def mix(cfg: MixtureConfig, docs: DocSet) -> DocSet:
    """Prefect task: the mix stage in its directory (keyed by the config, the data files and the crawl), skipped
    when done."""
    out = stage_dir("mix", mixture_key(cfg), docs, entry=run_mix)
    return load_done(out, DocSet) or run_mix(cfg, docs, out)
