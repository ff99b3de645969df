"""Read WARC/WARC.gz files (Common Crawl dumps, or our own crawl's output) as pages for the same extraction.

`iter_warc_pages` yields every successful HTML response record with its URL, headers, body and record id; the
crawl stage extracts them exactly like fetched pages (`tasks.collect.extract.extract_page`), so a user with downloaded
Common Crawl files skips crawling. Bodies are read through warcio's decoding stream (chunked transfer and content
encodings undone) and capped like fetched bodies.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass
class WarcPage:
    url: str
    status: int
    content_type: str
    content_language: str | None
    robots_header: str | None
    body: bytes
    fetch_time: str
    warc_file: str
    record_id: str

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def expand_warc_paths(patterns: list[str]) -> list[Path]:
    """The files the `warc_paths` globs name, sorted; a pattern matching nothing is an error, not a silent skip."""
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        if not matched:
            raise FileNotFoundError(f"crawl.warc_paths: {pattern!r} matches no file; give paths or globs of "
                                    ".warc / .warc.gz files")
        files.extend(Path(m) for m in matched)
    return files


def iter_warc_pages(path: Path, max_body_bytes: int, stats: dict[str, int]) -> Iterator[WarcPage]:
    """HTML 200 responses of one WARC file; `stats` counts records read and why others were skipped."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    with open(path, "rb") as stream:
        try:
            for record in ArchiveIterator(stream):
                if record.rec_type != "response":
                    continue
                stats["records"] = stats.get("records", 0) + 1
                http = record.http_headers
                if http is None:
                    stats["skipped_no_http"] = stats.get("skipped_no_http", 0) + 1
                    continue
                status = int(http.get_statuscode() or 0)
                ctype = (http.get_header("Content-Type") or "").lower()
                if status != 200:
                    stats["skipped_status"] = stats.get("skipped_status", 0) + 1
                    continue
                if ctype and not ctype.split(";")[0].strip().startswith(HTML_TYPES):
                    stats["skipped_non_html"] = stats.get("skipped_non_html", 0) + 1
                    continue
                if record.rec_headers.get_header("WARC-Truncated"):
                    stats["skipped_truncated"] = stats.get("skipped_truncated", 0) + 1
                    continue
                body = record.content_stream().read(max_body_bytes + 1)
                if len(body) > max_body_bytes:
                    stats["skipped_too_large"] = stats.get("skipped_too_large", 0) + 1
                    continue
                yield WarcPage(
                    url=record.rec_headers.get_header("WARC-Target-URI") or "",
                    status=status, content_type=ctype, body=body,
                    content_language=http.get_header("Content-Language"),
                    robots_header=http.get_header("X-Robots-Tag"),
                    fetch_time=record.rec_headers.get_header("WARC-Date") or "",
                    warc_file=str(path), record_id=record.rec_headers.get_header("WARC-Record-ID") or "")
        except ArchiveLoadFailed as exc:
            raise ValueError(f"{path}: not a readable WARC file ({exc}); give .warc or .warc.gz files") from exc
