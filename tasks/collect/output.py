"""A crawl's files, written in batches that are each complete on disk before the state store says "done".

Each batch is one gzipped WARC (`warc/crawl-00000.warc.gz`, request + response records via warcio) and one Parquet
part (`docs/docs_00000.parquet`). Both are written under temporary names and renamed on `flush`, so a killed crawl
leaves only whole files plus temporaries that `BatchWriter.__init__` deletes; a resumed crawl appends new batches.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from tasks.collect.fetch import Exchange


class BatchWriter:
    def __init__(self, out: Path, software: str) -> None:
        self.out, self.software = out, software
        for sub in ("warc", "docs"):
            (out / sub).mkdir(parents=True, exist_ok=True)
            for tmp in (out / sub).glob(".*.tmp"):
                tmp.unlink()  # half-written by a killed run; its URLs are not marked done, so they are refetched
        self.n_warc = len(list((out / "warc").glob("crawl-*.warc.gz")))
        self.n_docs = len(list((out / "docs").glob("docs_*.parquet")))
        self.rows: list[dict[str, Any]] = []
        self._warc_file: Any = None
        self._warc_writer: Any = None

    @property
    def warc_name(self) -> str:
        return f"warc/crawl-{self.n_warc:05d}.warc.gz"

    def _writer(self) -> Any:
        if self._warc_writer is None:
            from warcio.warcwriter import WARCWriter

            self._warc_file = open(self.out / f"warc/.crawl-{self.n_warc:05d}.warc.gz.tmp", "wb")
            self._warc_writer = WARCWriter(self._warc_file, gzip=True)
            info = self._warc_writer.create_warcinfo_record(self.warc_name.split("/")[-1],
                                                            {"software": self.software, "format": "WARC/1.1"})
            self._warc_writer.write_record(info)
        return self._warc_writer

    def write_exchange(self, ex: Exchange) -> tuple[str, str]:
        """Append a request and a response record; returns (WARC file relative to `out`, response record id)."""
        from urllib.parse import urlsplit

        from warcio.statusandheaders import StatusAndHeaders

        writer = self._writer()
        parts = urlsplit(ex.url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        request = writer.create_warc_record(
            ex.url, "request", payload=io.BytesIO(b""),
            http_headers=StatusAndHeaders(f"GET {target} HTTP/1.1", ex.request_headers, is_http_request=True))
        warc_headers = {"WARC-Date": ex.fetch_time}
        if ex.ip:
            warc_headers["WARC-IP-Address"] = ex.ip
        if ex.truncated:
            warc_headers["WARC-Truncated"] = "length"
        response = writer.create_warc_record(
            ex.url, "response", payload=io.BytesIO(ex.body), warc_headers_dict=warc_headers,
            http_headers=StatusAndHeaders(f"{ex.status} {ex.reason}", ex.headers, protocol="HTTP/1.1"))
        request.rec_headers.add_header("WARC-Concurrent-To", response.rec_headers.get_header("WARC-Record-ID"))
        writer.write_record(response)
        writer.write_record(request)
        return self.warc_name, response.rec_headers.get_header("WARC-Record-ID")

    def add_doc(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def flush(self) -> None:
        """Close and rename this batch's WARC and Parquet part; then the caller may commit the state store."""
        from tasks.collect.extract import write_docs

        if self._warc_file is not None:
            self._warc_file.close()
            os.replace(self._warc_file.name, self.out / self.warc_name)
            self._warc_file = self._warc_writer = None
            self.n_warc += 1
        if self.rows:
            write_docs(self.rows, self.out / f"docs/docs_{self.n_docs:05d}.parquet")
            self.rows = []
            self.n_docs += 1

    def close(self) -> None:
        if self._warc_file is not None:
            self._warc_file.close()

    def existing_docs(self) -> tuple[set[str], set[str]]:
        """(ids, content hashes) of documents in parts written by earlier runs of this crawl."""
        import pyarrow.parquet as pq

        ids: set[str] = set()
        hashes: set[str] = set()
        for part in sorted((self.out / "docs").glob("docs_*.parquet")):
            table = pq.read_table(part, columns=["id", "content_hash"])
            ids.update(table.column("id").to_pylist())
            hashes.update(table.column("content_hash").to_pylist())
        return ids, hashes

    def finish(self) -> tuple[list[str], list[str], int]:
        """(doc parts, WARC files, doc count), relative to `out`; an empty part when there are no documents."""
        import pyarrow.parquet as pq

        from tasks.collect.extract import write_docs

        self.flush()
        parts = sorted((self.out / "docs").glob("docs_*.parquet"))
        if not parts:
            write_docs([], self.out / "docs/docs_00000.parquet")
            parts = [self.out / "docs/docs_00000.parquet"]
        n_docs = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        warcs = sorted((self.out / "warc").glob("crawl-*.warc.gz"))
        return [p.relative_to(self.out).as_posix() for p in parts], \
            [w.relative_to(self.out).as_posix() for w in warcs], n_docs
