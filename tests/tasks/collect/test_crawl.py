"""run_crawl end to end on sites served on 127.0.0.1: discovery (links, sitemaps, feeds), scope, incremental
recrawl with conditional requests, a killed crawl resuming, WARC round trip through the ingest path, the local site.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fault_site import FaultSite, article
from test_crawl_faults import crawl, fast_config

from tasks.collect.config import CrawlConfig
from tasks.collect.crawl import crawl as crawl_task
from tasks.collect.crawl import run_crawl
from tasks.collect.local_site import LocalSiteConfig

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def site():
    server = FaultSite()
    yield server
    server.close()


def test_follows_links_within_scope_only(site: FaultSite, tmp_path: Path):
    site.pages["/hub"] = article("Hub", 0, links=["/page/1", "/page/2", "/page/3", "http://elsewhere.invalid/x",
                                                  "/skip/me", "/logo.png", "ftp://x.invalid/", "file:///etc/passwd"])
    stats, rows, _ = crawl(tmp_path, [f"{site.base}/hub"], max_depth=1, deny_patterns=["/skip/"])
    assert sorted(r["url"].removeprefix(site.base) for r in rows) == ["/hub", "/page/1", "/page/2", "/page/3"]
    assert stats["discovery"]["skipped_off_domain"] == 1 and stats["discovery"]["skipped_denied_pattern"] == 1
    assert stats["discovery"]["skipped_file_extension"] == 1
    assert not [p for p in site.paths() if p.startswith(("/skip", "/logo"))]


def test_max_pages_and_max_depth_bound_the_crawl(site: FaultSite, tmp_path: Path):
    stats, rows, _ = crawl(tmp_path, [f"{site.base}/"], max_depth=1, max_pages=3)
    assert len(rows) == 3 and stats["totals"]["urls"] == 3 and stats["discovery"]["skipped_max_pages"] == 3
    stats, rows, _ = crawl(tmp_path / "b", [f"{site.base}/"], max_depth=0)
    assert len(rows) == 1 and stats["discovery"]["skipped_max_depth"] == 5


def test_sitemaps_from_robots_txt_are_followed(site: FaultSite, tmp_path: Path):
    site.robots = f"User-agent: *\nDisallow:\nSitemap: {site.base}/sitemap-index.xml\n"
    site.pages["/sitemap-index.xml"] = ('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/'
                                        f'schemas/sitemap/0.9"><sitemap><loc>{site.base}/sitemap-a.xml</loc>'
                                        '</sitemap></sitemapindex>')
    site.pages["/sitemap-a.xml"] = ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                                    f'sitemap/0.9"><url><loc>{site.base}/hidden/1</loc></url>'
                                    f'<url><loc>{site.base}/hidden/2</loc></url></urlset>')
    site.pages["/hidden/1"] = article("Hidden one", 1)
    site.pages["/hidden/2"] = article("Hidden two", 2)
    stats, rows, _ = crawl(tmp_path, [f"{site.base}/page/1"], max_depth=0)
    assert {r["title"] for r in rows} == {"Page 1", "Hidden one", "Hidden two"}
    assert stats["docs"] == {"emitted": 3} and stats["outcomes"]["fetched"] == 5  # + the two sitemaps


def test_rss_and_atom_feeds_are_discovered(site: FaultSite, tmp_path: Path):
    feed_link = '<link rel="alternate" type="application/rss+xml" href="/feed.xml">'
    site.pages["/blog"] = article("Blog", 0, head=feed_link)
    site.pages["/feed.xml"] = ('<?xml version="1.0"?><rss version="2.0"><channel><title>b</title>'
                               f'<item><link>{site.base}/post/1</link></item><item><link>/post/2</link></item>'
                               '</channel></rss>')
    site.pages["/atom.xml"] = ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><entry>'
                               f'<link href="{site.base}/post/3"/></entry></feed>')
    for i in (1, 2, 3):
        site.pages[f"/post/{i}"] = article(f"Post {i}", i)
    stats, rows, _ = crawl(tmp_path, [f"{site.base}/blog", f"{site.base}/atom.xml"], max_depth=2)
    assert {r["title"] for r in rows} == {"Blog", "Post 1", "Post 2", "Post 3"}


def test_incremental_recrawl_sends_conditional_requests_and_emits_only_news(site: FaultSite, tmp_path: Path):
    first = run_crawl(fast_config(tmp_path, [f"{site.base}/"], max_depth=1, incremental=True), tmp_path / "a")
    assert first.n_docs == 6
    site.log.clear()
    again = run_crawl(fast_config(tmp_path, [f"{site.base}/"], max_depth=1, incremental=True, snapshot="2"),
                      tmp_path / "b")
    stats = again.manifest()["stats"]
    assert again.n_docs == 0 and stats["outcomes"] == {"not_modified": 6}
    assert all("If-None-Match" in headers for _, path, headers in site.log if path != "/robots.txt")
    site.n_pages = 6  # the root changes and links one new page
    third = run_crawl(fast_config(tmp_path, [f"{site.base}/"], max_depth=1, incremental=True, snapshot="3"),
                      tmp_path / "c")
    urls = sorted(r["url"] for f in third.files for r in pq.read_table(third.dir / f).to_pylist())
    assert urls == [f"{site.base}/", f"{site.base}/page/6"]
    assert third.manifest()["stats"]["outcomes"] == {"fetched": 2, "not_modified": 5}


def test_killed_crawl_resumes_without_refetching_finished_urls(tmp_path: Path):
    site = FaultSite(n_pages=40, robots="User-agent: *\nCrawl-delay: 0.05\n")
    out = tmp_path / "out"
    cfg = fast_config(tmp_path, [f"{site.base}/"], max_depth=1, flush_every=5, concurrency=2)
    script = ("import sys; from pathlib import Path; from tasks.collect.crawl import CrawlConfig, run_crawl; "
              "run_crawl(CrawlConfig.model_validate_json(sys.argv[1]), Path(sys.argv[2]))")
    proc = subprocess.Popen([sys.executable, "-c", script, cfg.model_dump_json(), str(out)], cwd=REPO)
    try:
        done: set[str] = set()
        deadline = time.monotonic() + 60
        while len(done) < 12 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            done = _done_urls(tmp_path / "state.sqlite", str(out.resolve()))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 12 <= len(done) < 41, "the crawl should be killed midway"
        done = _done_urls(tmp_path / "state.sqlite", str(out.resolve()))
        assert not (out / "manifest.json").exists()
        site.log.clear()
        ref = run_crawl(cfg, out)
    finally:
        site.close()
    refetched = {f"{site.base}{p}" for p in site.paths()} & done
    assert refetched == set()
    rows = [r for f in ref.files for r in pq.read_table(out / f).to_pylist()]
    assert len(rows) == 41 and len({r["id"] for r in rows}) == 41
    assert ref.manifest()["stats"]["outcomes"] == {"fetched": 41}


def _done_urls(db: Path, crawl_id: str) -> set[str]:
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            rows = conn.execute("SELECT url FROM frontier WHERE crawl_id=? AND state='done'", (crawl_id,))
            return {r[0] for r in rows}
    except sqlite3.OperationalError:  # tables not created yet
        return set()


def test_warc_written_by_the_crawler_reads_back_through_ingest(site: FaultSite, tmp_path: Path):
    site.pages["/mislabelled-too"] = article("Déjà vu", 3)
    crawled = run_crawl(fast_config(tmp_path, [f"{site.base}/"], max_depth=1), tmp_path / "crawl")
    ingested = run_crawl(CrawlConfig(warc_paths=[str(tmp_path / "crawl/warc/*.warc.gz")], extract_workers=0,
                                     state_path=str(tmp_path / "state.sqlite")), tmp_path / "ingest")

    def docs(ref):
        return {r["id"]: r for f in ref.files for r in pq.read_table(ref.dir / f).to_pylist()}

    a, b = docs(crawled), docs(ingested)
    assert len(a) == 6 and a.keys() == b.keys()
    fields = ("text", "title", "url", "domain", "content_hash", "fetch_time", "http_status", "warc_record_id")
    for key in a:
        assert {f: a[key][f] for f in fields} == {f: b[key][f] for f in fields}
    assert ingested.manifest()["stats"]["warc_ingest"]["docs"] == 6


def test_ingest_rejects_paths_that_match_nothing(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="matches no file"):
        run_crawl(CrawlConfig(warc_paths=[str(tmp_path / "none/*.warc.gz")], extract_workers=0,
                              state_path=str(tmp_path / "s.sqlite")), tmp_path / "out")


def test_local_site_is_served_and_crawled_in_worker_processes(tmp_path: Path):
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text(article("Home", 0, links=["sub/a.html", "manual.pdf"]))
    (root / "sub/a.html").write_text(article("Sub A", 1, links=["../index.html", "b.html"]))
    (root / "sub/b.html").write_text(article("Sub B", 2))
    (root / "manual.pdf").write_bytes(b"%PDF-1.4")
    cfg = CrawlConfig(local_site=LocalSiteConfig(roots={"docs": str(root)}, port=0), extract_workers=1,
                      state_path=str(tmp_path / "state.sqlite"))
    ref = run_crawl(cfg, tmp_path / "out")
    rows = [r for f in ref.files for r in pq.read_table(ref.dir / f).to_pylist()]
    assert sorted(r["url"].split("/", 3)[3] for r in rows) == ["docs/", "docs/sub/a.html", "docs/sub/b.html"]
    report = json.loads((ref.dir / "report.json").read_text())
    assert report["stats"]["outcomes"]["fetched"] == 5  # + the generated root index and docs/index.html (duplicate)
    # the generated index is noindex: it is our page, not corpus text
    assert report["stats"]["docs"] == {"emitted": 3, "duplicate_content": 1, "noindex": 1}


def test_prefect_task_skips_a_finished_crawl(site: FaultSite, tmp_path: Path, lmforge_home: Path):
    cfg = fast_config(tmp_path, [f"{site.base}/"], max_depth=1)
    first = crawl_task.fn(cfg)
    requests = len(site.log)
    assert crawl_task.fn(cfg) == first and len(site.log) == requests
    assert Path(first.path).parent == lmforge_home / "runs" / "crawl"


def test_run_crawl_works_when_called_from_async_code(site: FaultSite, tmp_path: Path):
    import asyncio

    async def inside_a_loop():  # as from an async Prefect flow: asyncio.run would refuse to nest
        return run_crawl(fast_config(tmp_path, [f"{site.base}/"], max_depth=1), tmp_path / "out")

    assert asyncio.run(inside_a_loop()).n_docs == 6
