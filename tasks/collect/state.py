"""The crawl state store (SQLite): what we know about each URL across crawls, and each crawl's frontier.

`pages` keeps, per URL and across crawls, the validators (ETag, Last-Modified), the hash of the last body and the
links it had, so an incremental crawl sends conditional requests and still follows the links of a 304 page.
`frontier` keeps, per crawl (keyed by its stage directory), every URL queued and how it ended, so a killed crawl
resumes without refetching finished URLs and the crawl report counts outcomes over all its runs. The crawler
commits only after the docs and WARC of a batch are on disk, so "done" here always means "saved there".
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, content_hash TEXT, status INTEGER, fetched_at TEXT,
    links TEXT
);
CREATE TABLE IF NOT EXISTS frontier (
    crawl_id TEXT NOT NULL, url TEXT NOT NULL, depth INTEGER NOT NULL, kind TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued', outcome TEXT, error_kind TEXT, doc TEXT, attempts INTEGER, bytes INTEGER,
    PRIMARY KEY (crawl_id, url)
);
"""


@dataclass
class PageInfo:
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    links: list[str]


@dataclass
class Finished:
    """How one URL of a crawl ended (one frontier row)."""

    url: str
    outcome: str
    error_kind: str = ""
    doc: str = ""  # emitted | empty_text | binary_content | noindex | unchanged | duplicate_content | ""
    attempts: int = 0
    bytes: int = 0


class CrawlState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Used by one thread at a time, but not always the one that opened it (crawls from async code).
            self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RuntimeError(f"crawl state store {path} is unreadable ({exc}); move it away to start afresh "
                               "(incremental recrawl then refetches everything once)") from exc

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        self.db.commit()

    # -- per URL, across crawls
    def page(self, url: str) -> PageInfo | None:
        row = self.db.execute("SELECT etag, last_modified, content_hash, links FROM pages WHERE url=?",
                              (url,)).fetchone()
        return PageInfo(row[0], row[1], row[2], json.loads(row[3] or "[]")) if row else None

    def save_page(self, url: str, etag: str | None, last_modified: str | None, content_hash: str | None,
                  status: int, fetched_at: str, links: list[str] | None) -> None:
        self.db.execute(
            "INSERT INTO pages VALUES (?,?,?,?,?,?,?) ON CONFLICT(url) DO UPDATE SET etag=excluded.etag, "
            "last_modified=excluded.last_modified, content_hash=excluded.content_hash, status=excluded.status, "
            "fetched_at=excluded.fetched_at, links=COALESCE(excluded.links, pages.links)",
            (url, etag, last_modified, content_hash, status, fetched_at,
             json.dumps(links) if links is not None else None))

    # -- one crawl's frontier
    def queue(self, crawl_id: str, items: list[tuple[str, int, str]]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO frontier (crawl_id, url, depth, kind) VALUES (?,?,?,?)",
                            [(crawl_id, url, depth, kind) for url, depth, kind in items])

    def finish(self, crawl_id: str, rows: list[Finished]) -> None:
        self.db.executemany(
            "UPDATE frontier SET state='done', outcome=?, error_kind=?, doc=?, attempts=?, bytes=? "
            "WHERE crawl_id=? AND url=?",
            [(r.outcome, r.error_kind, r.doc, r.attempts, r.bytes, crawl_id, r.url) for r in rows])

    def frontier(self, crawl_id: str) -> tuple[set[str], list[tuple[str, int, str]]]:
        """(URLs already known to this crawl, URLs still to fetch as (url, depth, kind))."""
        rows = self.db.execute("SELECT url, depth, kind, state FROM frontier WHERE crawl_id=? ORDER BY rowid",
                               (crawl_id,)).fetchall()
        return {r[0] for r in rows}, [(r[0], r[1], r[2]) for r in rows if r[3] == "queued"]

    def done_urls(self, crawl_id: str) -> set[str]:
        rows = self.db.execute("SELECT url FROM frontier WHERE crawl_id=? AND state='done'", (crawl_id,))
        return {r[0] for r in rows}

    def outcome_counts(self, crawl_id: str) -> dict[str, dict[str, int]]:
        """Per-outcome, per-error-kind and per-doc-result counts, plus retries and bytes, over the whole crawl."""
        rows = self.db.execute("SELECT outcome, error_kind, doc, attempts, bytes FROM frontier "
                               "WHERE crawl_id=? AND state='done'", (crawl_id,)).fetchall()
        outcomes, errors, docs = Counter(), Counter(), Counter()
        retried = retries = nbytes = 0
        for outcome, error_kind, doc, attempts, size in rows:
            outcomes[outcome] += 1
            if error_kind:
                errors[error_kind] += 1
            if doc:
                docs[doc] += 1
            retried += int((attempts or 0) > 1)
            retries += max(0, (attempts or 0) - 1)
            nbytes += size or 0
        return {"outcomes": dict(outcomes), "errors": dict(errors), "docs": dict(docs),
                "totals": {"urls": len(rows), "retried": retried, "retries": retries, "bytes": nbytes}}

    def errors(self, crawl_id: str, limit: int = 200) -> list[dict[str, str]]:
        rows = self.db.execute("SELECT url, outcome, error_kind FROM frontier WHERE crawl_id=? AND state='done' "
                               "AND outcome NOT IN ('fetched','not_modified') LIMIT ?", (crawl_id, limit))
        return [{"url": u, "outcome": o, "error_kind": e or ""} for u, o, e in rows]

    def forget(self, crawl_id: str) -> None:
        self.db.execute("DELETE FROM frontier WHERE crawl_id=?", (crawl_id,))
        self.db.commit()
