"""One crawl per fault against the fault-injecting site on 127.0.0.1: the exact outcome recorded, the crawl completes.

Timeouts, retries and backoff are tiny in `fast_config`, so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
from fault_site import FaultSite, bomb_body

from tasks.collect.config import CrawlConfig
from tasks.collect.crawl import run_crawl


def fast_config(tmp_path: Path, seeds: list[str], **overrides: Any) -> CrawlConfig:
    settings: dict[str, Any] = dict(
        seeds=seeds, state_path=str(tmp_path / "state.sqlite"),
        allow_private_hosts=sorted({urlsplit(seed).netloc for seed in seeds}),  # the test sites' host:port
        extract_workers=0, concurrency=4, min_delay_s=0.0, connect_timeout_s=1.0, read_timeout_s=0.5,
        total_timeout_s=2.0, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05, max_body_bytes=1_000_000,
        max_depth=0)
    settings.update(overrides)
    return CrawlConfig(**settings)


def crawl(tmp_path: Path, seeds: list[str], **overrides: Any) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """Run the crawl; (stats, doc rows, output dir)."""
    out = tmp_path / "out"
    ref = run_crawl(fast_config(tmp_path, seeds, **overrides), out)
    rows = [row for f in ref.files for row in pq.read_table(out / f).to_pylist()]
    assert ref.n_docs == len(rows)
    return ref.manifest()["stats"], rows, out


def problems(out: Path) -> dict[str, tuple[str, str]]:
    report = json.loads((out / "report.json").read_text())
    return {p["url"].rsplit("/", 1)[-1]: (p["outcome"], p["error_kind"]) for p in report["problems"]}


@pytest.fixture
def site() -> Iterator[FaultSite]:
    server = FaultSite()
    yield server
    server.close()


def test_500_then_200_is_retried_and_fetched(site: FaultSite, tmp_path: Path):
    stats, rows, _ = crawl(tmp_path, [f"{site.base}/flaky"])
    assert len(site.requests("/flaky")) == 2
    assert stats["outcomes"] == {"fetched": 1} and stats["totals"]["retried"] == 1
    assert [r["url"] for r in rows] == [f"{site.base}/flaky"]


def test_503_forever_gives_up_after_max_retries(site: FaultSite, tmp_path: Path):
    stats, rows, out = crawl(tmp_path, [f"{site.base}/down"], max_retries=3)
    assert len(site.requests("/down")) == 4  # first try + 3 retries
    assert stats["errors"] == {"http_503": 1} and rows == []
    assert problems(out)["down"] == ("error", "http_503")


def test_429_waits_at_least_retry_after(site: FaultSite, tmp_path: Path):
    stats, rows, _ = crawl(tmp_path, [f"{site.base}/throttled"])
    first, second = site.requests("/throttled")
    assert second - first >= 1.0  # Retry-After: 1, although the backoff alone is 10 ms
    assert stats["outcomes"] == {"fetched": 1} and len(rows) == 1


def test_read_timeout_is_recorded_after_retries(site: FaultSite, tmp_path: Path):
    stats, _, out = crawl(tmp_path, [f"{site.base}/stall"], max_retries=1)
    assert len(site.requests("/stall")) == 2
    assert problems(out)["stall"] == ("error", "read_timeout") and stats["errors"] == {"read_timeout": 1}


def test_slow_drip_body_hits_the_total_timeout(site: FaultSite, tmp_path: Path):
    started = time.monotonic()
    stats, _, out = crawl(tmp_path, [f"{site.base}/drip"], total_timeout_s=0.5)
    assert problems(out)["drip"] == ("error", "total_timeout")
    assert len(site.requests("/drip")) == 1  # a server that slow is not retried
    assert time.monotonic() - started < 4.0  # the drip alone would take 5 s


def test_redirect_loop_is_detected(site: FaultSite, tmp_path: Path):
    stats, _, out = crawl(tmp_path, [f"{site.base}/loop-a"], max_redirects=10)
    assert problems(out)["loop-a"] == ("error", "redirect_loop")
    assert site.paths().count("/loop-a") == 1 and site.paths().count("/loop-b") == 1


def test_redirect_to_private_addresses_is_refused(site: FaultSite, tmp_path: Path):
    stats, _, out = crawl(tmp_path, [f"{site.base}/to-private", f"{site.base}/to-metadata"])
    # "localhost" is not allow-listed and resolves to loopback; 169.254.169.254 is link-local (cloud metadata).
    assert problems(out)["to-private"] == ("blocked_address", "")
    assert problems(out)["to-metadata"] == ("blocked_address", "")
    assert "/secret" not in site.paths() and stats["outcomes"] == {"blocked_address": 2}


def test_50mb_body_is_cut_at_the_cap(site: FaultSite, tmp_path: Path):
    from warcio.archiveiterator import ArchiveIterator

    stats, rows, out = crawl(tmp_path, [f"{site.base}/huge"], max_body_bytes=200_000)
    assert problems(out)["huge"] == ("too_large", "") and rows == []
    assert site.huge_sent < 50_000_000  # we hung up; the server never got to send it all
    with open(next((out / "warc").glob("*.warc.gz")), "rb") as f:
        for record in ArchiveIterator(f):
            uri = record.rec_headers.get_header("WARC-Target-URI") or ""
            if uri.endswith("/huge") and record.rec_type == "response":
                assert record.rec_headers.get_header("WARC-Truncated") == "length"
                assert 0 < len(record.content_stream().read()) <= 200_000
                break
        else:
            raise AssertionError("no WARC response record for /huge")


def test_gzip_bomb_is_refused(site: FaultSite, tmp_path: Path):
    assert len(bomb_body()) < 100_000  # 50 MB inflated: a ratio near 1000
    stats, rows, out = crawl(tmp_path, [f"{site.base}/bomb"], max_body_bytes=5_000_000)
    assert problems(out)["bomb"] == ("decompression_bomb", "") and rows == []


def test_binary_content_with_html_type_is_skipped(site: FaultSite, tmp_path: Path):
    stats, rows, _ = crawl(tmp_path, [f"{site.base}/binary"])
    assert stats["outcomes"] == {"fetched": 1} and stats["docs"] == {"binary_content": 1} and rows == []


def test_non_html_content_type_is_recorded_and_not_downloaded(site: FaultSite, tmp_path: Path):
    stats, rows, out = crawl(tmp_path, [f"{site.base}/data.json"])
    assert problems(out)["data.json"] == ("non_html", "") and rows == []
    assert stats["totals"]["bytes"] == 0


def test_robots_txt_server_error_means_disallow_all(tmp_path: Path):
    site = FaultSite(robots="User-agent: *\nDisallow:\n", robots_status=503)
    try:
        stats, rows, _ = crawl(tmp_path, [f"{site.base}/", f"{site.base}/page/1"], max_retries=1)
    finally:
        site.close()
    assert set(site.paths()) == {"/robots.txt"}  # RFC 9309: unreachable robots.txt = complete disallow
    assert stats["errors"] == {"robots_unavailable": 2} and rows == []


def test_wrong_declared_charset_still_gives_correct_text(site: FaultSite, tmp_path: Path):
    _, [row], _ = crawl(tmp_path, [f"{site.base}/mislabelled"])
    assert row["title"] == "Café naïve" and "Crème brûlée à la française" in row["text"]


def test_malformed_html_is_extracted(site: FaultSite, tmp_path: Path):
    _, [row], _ = crawl(tmp_path, [f"{site.base}/malformed"])
    assert "unclosed" in row["text"] and row["title"] == "Broken"


def test_robots_disallow_is_never_requested(tmp_path: Path):
    site = FaultSite(robots="User-agent: *\nAllow: /\n\nUser-agent: lmforge\nDisallow: /page/\n")
    try:
        stats, rows, out = crawl(tmp_path, [f"{site.base}/"], max_depth=1)
    finally:
        site.close()
    assert not [p for p in site.paths() if p.startswith("/page/")]
    assert stats["outcomes"] == {"fetched": 1, "robots_denied": 5} and len(rows) == 1
    assert site.paths().count("/robots.txt") == 1


def test_crawl_delay_is_honoured(tmp_path: Path):
    site = FaultSite(n_pages=4, robots="User-agent: *\nCrawl-delay: 0.3\n")
    try:
        stats, rows, _ = crawl(tmp_path, [f"{site.base}/"], max_depth=1, concurrency=8)
    finally:
        site.close()
    times = sorted(t for t, p, _ in site.log if p != "/robots.txt")
    assert len(times) == 5 and len(rows) == 5
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.29


def test_connection_refused_is_recorded(tmp_path: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the crawl: nothing listens there
    stats, rows, out = crawl(tmp_path, [f"http://127.0.0.1:{port}/"], max_retries=1)
    assert stats["errors"] == {"connect_error": 1} and rows == []
    assert stats["outcomes"] == {"error": 1}
