"""The crawl stage: seeds (or WARC files) in, raw WARC + extracted documents (Parquet) + a crawl report out.

`CrawlConfig` holds scope, politeness and robustness settings; `run_crawl` serves the optional local site, runs
the crawler (`tasks.crawler`), ingests `warc_paths` through the same extraction, and finishes the stage with
per-outcome stats. Output in the stage dir: `warc/crawl-*.warc.gz`, `docs/docs_*.parquet` (`tasks.schema.
DOC_SCHEMA`), `report.json`, `manifest.json`. State that outlives one crawl (validators for incremental recrawls,
the frontier of a killed crawl) lives in the SQLite store at `state_path`.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.artifacts import DocSet, finish_stage, lmforge_home, load_done, reset_dir, stage_dir, write_json_atomic
from tasks.crawl_output import BatchWriter
from tasks.local_site import LocalSiteConfig, serve_local_site

USER_AGENT = "lmforge/0.1 (+https://github.com/lmforge/lmforge)"


class CrawlConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seeds: list[str] = Field(default_factory=list, description="Start URLs: pages, sitemaps or RSS/Atom feeds.")
    local_site: LocalSiteConfig | None = Field(default=None, description="Serve local directories on loopback "
                                               "during the crawl and crawl them (the demo corpus).")
    warc_paths: list[str] = Field(default_factory=list, description="Globs of WARC/WARC.gz files (e.g. Common "
                                  "Crawl) to extract as well; with no seeds and no local site, only ingest.")
    # scope
    same_domain: bool = Field(default=True, description="Follow links only within the seeds' registered domains.")
    allow_hosts: list[str] = Field(default_factory=list, description="Extra hosts (and subdomains) in scope.")
    deny_hosts: list[str] = Field(default_factory=list, description="Hosts (and subdomains) never crawled.")
    allow_patterns: list[str] = Field(default_factory=list, description="Regexes; if any, a link must match one.")
    deny_patterns: list[str] = Field(default_factory=list, description="Regexes; a matching link is skipped.")
    max_depth: int = Field(default=10, ge=0, description="Link hops from a seed.")
    max_pages: int = Field(default=2000, ge=1, description="URLs fetched at most (pages, sitemaps, feeds).")
    max_pages_per_host: int = Field(default=2000, ge=1, description="URLs fetched at most per host.")
    use_sitemaps: bool = Field(default=True, description="Queue the sitemaps robots.txt lists.")
    # politeness
    user_agent: str = Field(default=USER_AGENT, description="User-Agent; its first token is matched in robots.txt.")
    concurrency: int = Field(default=16, ge=1, description="Requests in flight over all hosts.")
    per_host_concurrency: int = Field(default=2, ge=1, description="Requests in flight per host.")
    min_delay_s: float = Field(default=1.0, ge=0, description="Seconds between request starts per host; robots.txt "
                               "Crawl-delay raises it. Hosts in allow_private_hosts (your own) get 0 unless "
                               "their robots.txt asks for more.")
    # robustness
    connect_timeout_s: float = Field(default=10.0, gt=0, description="TCP/TLS connect timeout.")
    read_timeout_s: float = Field(default=20.0, gt=0, description="Longest wait for the next bytes.")
    total_timeout_s: float = Field(default=60.0, gt=0, description="Longest time for one request, body included.")
    max_retries: int = Field(default=3, ge=0, description="Retries on 429, 5xx and connection errors.")
    backoff_base_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles each retry, jittered.")
    backoff_max_s: float = Field(default=60.0, ge=0, description="Cap on one retry delay.")
    max_retry_after_s: float = Field(default=300.0, ge=0, description="A longer Retry-After gives up on the URL.")
    max_redirects: int = Field(default=5, ge=0, description="Redirect hops followed per URL.")
    max_body_bytes: int = Field(default=5_000_000, ge=1024, description="Body cap (raw and decoded); a larger "
                                "body is cut there and recorded too_large.")
    max_compression_ratio: float = Field(default=100.0, gt=1, description="Decoded/raw size above which a "
                                         "compressed body is refused as a decompression bomb.")
    allow_private_hosts: list[str] = Field(default_factory=list, description="Hosts allowed to resolve to "
                                           "private/loopback addresses (refused otherwise). The local site's host "
                                           "is added automatically.")
    # execution and state
    extract_workers: int = Field(default=2, ge=0, description="Processes running trafilatura (0 = in a thread). "
                                 "Processes are spawned: a script calling run_crawl needs `if __name__ == '__main__'`.")
    extract_fallback: bool = Field(default=False, description="Also run trafilatura's readability/jusText fallback: "
                                   "better recall on odd layouts, about twice the extraction time.")
    flush_every: int = Field(default=200, ge=1, description="Finished URLs per WARC/Parquet batch; a killed "
                             "crawl resumes after the last batch.")
    incremental: bool = Field(default=False, description="Send conditional requests (ETag/Last-Modified) and emit "
                              "only new or changed documents.")
    state_path: str | None = Field(default=None, description="SQLite crawl state; default "
                                   "$LMFORGE_HOME/crawl-state.sqlite.")
    snapshot: str = Field(default="", description="Label that makes a new stage dir (the retraining flow sets a "
                          "timestamp, so each scheduled crawl runs again).")


def _extract_pool(workers: int) -> Executor:
    if workers == 0:
        return ThreadPoolExecutor(1, thread_name_prefix="lmforge-extract")
    import multiprocessing

    # spawn, not fork: the parent holds threads (local site, event loop) that a fork would copy mid-state.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def run_crawl(cfg: CrawlConfig, out: Path) -> DocSet:
    """Crawl `cfg.seeds` (and the local site), ingest `cfg.warc_paths`, write docs/WARC/report into `out`."""
    from tasks.crawl_state import CrawlState
    from tasks.crawler import Crawler, run_loop

    if not cfg.seeds and cfg.local_site is None and not cfg.warc_paths:
        raise ValueError("crawl: nothing to do; set crawl.seeds, crawl.local_site or crawl.warc_paths")
    t0 = time.time()
    crawl_id = str(out.resolve())
    state = CrawlState(Path(cfg.state_path) if cfg.state_path else lmforge_home() / "crawl-state.sqlite")
    try:
        known, _ = state.frontier(crawl_id)
        if not known:
            reset_dir(out)  # leftovers without a frontier cannot be resumed
        stats: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            writer = BatchWriter(out, cfg.user_agent)
            stack.callback(writer.close)
            pool = _extract_pool(cfg.extract_workers)
            stack.callback(pool.shutdown, cancel_futures=True)
            seeds, own_hosts, seen_ids = list(cfg.seeds), set(), set()
            if cfg.local_site is not None:
                seeds.append(stack.enter_context(serve_local_site(cfg.local_site)))
                own_hosts.add(cfg.local_site.host.lower())
            if seeds:
                crawler = Crawler(cfg, seeds, own_hosts, state, crawl_id, writer, pool)
                discovery, seconds = run_loop(crawler)
                seen_ids = crawler.doc_ids
                stats.update(state.outcome_counts(crawl_id), **discovery)
                fetched = stats["outcomes"].get("fetched", 0) + stats["outcomes"].get("not_modified", 0)
                stats["timing"] = {"crawl_s": round(seconds, 3),
                                   "pages_per_s": round(fetched / max(seconds, 1e-9), 2),
                                   "bytes_per_s": round(stats["totals"]["bytes"] / max(seconds, 1e-9))}
            if cfg.warc_paths:
                stats["warc_ingest"] = _ingest(cfg, writer, pool, seen_ids)
            parts, warcs, n_docs = writer.finish()
        stats["n_docs"], stats["n_warc_files"] = n_docs, len(warcs)
        report = {"stats": stats, "config": cfg.model_dump(mode="json"), "warc_files": warcs, "doc_files": parts,
                  "problems": state.errors(crawl_id)}
        write_json_atomic(out / "report.json", report)
        ref = DocSet(path=str(out), files=parts, n_docs=n_docs)
        done = finish_stage(out, ref, config=cfg, stats=stats, files=[*parts, *warcs, "report.json"], started=t0)
        state.forget(crawl_id)  # after the manifest: until then the frontier is what a resume needs
        return done
    finally:
        state.close()


def _ingest(cfg: CrawlConfig, writer: BatchWriter, pool: Executor, seen_ids: set[str]) -> dict[str, int]:
    """Extract the pages of `cfg.warc_paths` into `writer` (the same extraction as crawled pages)."""
    from tasks.discover import host_of, normalize
    from tasks.extract import doc_id, doc_row, extract_page
    from tasks.warc_ingest import expand_warc_paths, iter_warc_pages

    counts: dict[str, int] = {"files": 0, "docs": 0}
    hashes: set[str] = set()
    window = 4 * max(1, cfg.extract_workers) * 8  # bodies held in memory at once, whatever the WARC size
    for path in expand_warc_paths(cfg.warc_paths):
        counts["files"] += 1
        pages = iter_warc_pages(path, cfg.max_body_bytes, counts)
        while chunk := list(itertools.islice(pages, window)):
            futures = [pool.submit(extract_page, p.body, p.url, p.content_type, p.content_language,
                                   p.robots_header, cfg.extract_fallback) for p in chunk]
            for page, future in zip(chunk, futures, strict=True):
                extracted, url = future.result(), normalize(page.url) or page.url
                key = extracted.skip or ("duplicate_content" if doc_id(url) in seen_ids
                                         or page.content_hash in hashes else "")
                if key:
                    counts[key] = counts.get(key, 0) + 1
                    continue
                seen_ids.add(doc_id(url))
                hashes.add(page.content_hash)
                writer.add_doc(doc_row(extracted, url=url, domain=host_of(url),
                                       fetch_time=page.fetch_time, http_status=page.status,
                                       content_hash=page.content_hash, warc_file=page.warc_file,
                                       warc_record_id=page.record_id))
                counts["docs"] += 1
        writer.flush()
    return counts


@task(name="crawl", retries=1)
def crawl(cfg: CrawlConfig) -> DocSet:
    """Prefect task: the crawl stage in its deterministic directory, skipped when already done."""
    out = stage_dir("crawl", cfg)
    return load_done(out, DocSet) or run_crawl(cfg, out)
