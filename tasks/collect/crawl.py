"""The crawl stage: seeds (or WARC files) in, raw WARC + extracted documents (Parquet) + a crawl report out.

`CrawlConfig` holds scope, politeness and robustness settings; `run_crawl` serves the optional local site, runs
the crawler (`tasks.collect.crawler`), ingests `warc_paths` through the same extraction, and finishes the stage with
per-outcome stats. Output in the stage dir: `warc/crawl-*.warc.gz`, `docs/docs_*.parquet` (`tasks.core.schema.
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
from urllib.parse import urlsplit

from prefect import task

from tasks.collect.config import CrawlConfig
from tasks.collect.local_site import serve_local_site
from tasks.collect.output import BatchWriter
from tasks.core.artifacts import DocSet, finish_stage, lmforge_home, load_done, reset_dir, stage_dir, write_json_atomic


def _extract_pool(workers: int) -> Executor:
    if workers == 0:
        return ThreadPoolExecutor(1, thread_name_prefix="lmforge-extract")
    import multiprocessing

    # spawn, not fork: the parent holds threads (local site, event loop) that a fork would copy mid-state.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def run_crawl(cfg: CrawlConfig, out: Path) -> DocSet:
    """Crawl `cfg.seeds` (and the local site), ingest `cfg.warc_paths`, write docs/WARC/report into `out`."""
    from tasks.collect.crawler import Crawler, run_loop
    from tasks.collect.state import CrawlState

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
                root = stack.enter_context(serve_local_site(cfg.local_site))
                seeds.append(root)
                own_hosts.add(urlsplit(root).netloc.lower())  # host:port as bound: the site, not the whole host
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
        done = finish_stage(out, ref, config=cfg, entry=run_crawl,
                            stats=stats, files=[*parts, *warcs, "report.json"], started=t0)
        state.forget(crawl_id)  # after the manifest: until then the frontier is what a resume needs
        return done
    finally:
        state.close()


def _ingest(cfg: CrawlConfig, writer: BatchWriter, pool: Executor, seen_ids: set[str]) -> dict[str, int]:
    """Extract the pages of `cfg.warc_paths` into `writer` (the same extraction as crawled pages)."""
    from tasks.collect.discover import host_of, normalize
    from tasks.collect.extract import doc_id, doc_row, extract_page
    from tasks.collect.warc import expand_warc_paths, iter_warc_pages

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
    out = stage_dir("crawl", cfg, entry=run_crawl)
    return load_done(out, DocSet) or run_crawl(cfg, out)
