"""The crawl loop: a frontier of URLs worked by `concurrency` asyncio workers, extraction in an executor.

`Crawler.run` seeds (or resumes) the frontier from the state store, fetches through `tasks.collect.fetch.Fetcher` under
`tasks.collect.politeness.Politeness`, reads links from pages, sitemaps and feeds, extracts documents, and hands every
exchange and document to the `BatchWriter`. Every `flush_every` finished URLs it closes a batch on disk and only
then commits the state store, so a kill loses at most one batch of work and never marks unsaved work done.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.collect.discover import Scope, host_of, looks_like_xml_links, normalize, xml_links
from tasks.collect.extract import doc_id, doc_row, extract_page
from tasks.collect.fetch import Fetcher, FetchLimits, FetchResult
from tasks.collect.output import BatchWriter
from tasks.collect.politeness import Politeness
from tasks.collect.state import CrawlState, Finished
from tasks.core import progress

if TYPE_CHECKING:
    from tasks.collect.config import CrawlConfig


@dataclass
class Item:
    url: str
    depth: int
    kind: str  # page | sitemap | feed


class Crawler:
    def __init__(self, cfg: CrawlConfig, seeds: list[str], own_hosts: set[str], state: CrawlState, crawl_id: str,
                 writer: BatchWriter, pool: Executor) -> None:
        self.cfg, self.state, self.crawl_id, self.writer, self.pool = cfg, state, crawl_id, writer, pool
        self.seeds = [u for u in (normalize(s) for s in seeds) if u]
        self.scope = Scope(self.seeds, cfg.same_domain, tuple(cfg.allow_hosts), tuple(cfg.deny_hosts),
                           tuple(cfg.allow_patterns), tuple(cfg.deny_patterns))
        limits = FetchLimits(cfg.user_agent, cfg.connect_timeout_s, cfg.read_timeout_s, cfg.total_timeout_s,
                             cfg.max_retries, cfg.backoff_base_s, cfg.backoff_max_s, cfg.max_retry_after_s,
                             cfg.max_redirects, cfg.max_body_bytes, cfg.max_compression_ratio,
                             frozenset(h.lower() for h in [*cfg.allow_private_hosts, *own_hosts]))
        agent = cfg.user_agent.split("/")[0].strip().lower()
        own_names = {netloc.rpartition(":")[0].strip("[]") for netloc in own_hosts}
        self.politeness = Politeness(agent, cfg.min_delay_s, cfg.per_host_concurrency, own_names, cfg.concurrency,
                                     self._on_sitemaps if cfg.use_sitemaps else None, cfg.max_crawl_delay_s)
        self.fetcher = Fetcher(limits, self.politeness, writer.write_exchange)
        self.politeness.fetcher = self.fetcher
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.seen: set[str] = set()
        self.per_host: Counter[str] = Counter()
        self.discovery: Counter[str] = Counter()
        self.doc_ids, self.doc_hashes = writer.existing_docs()
        self.since_flush = 0

    def _enqueue(self, url: str | None, depth: int, kind: str, seed: bool = False) -> None:
        if url is None:
            return
        if url in self.seen:
            self.discovery["already_seen"] += 1
            return
        reason = "" if seed else self.scope.reason_out(url)
        if not reason and depth > self.cfg.max_depth:
            reason = "max_depth"
        if not reason and len(self.seen) >= self.cfg.max_pages:
            reason = "max_pages"
        if not reason and self.per_host[host_of(url)] >= self.cfg.max_pages_per_host:
            reason = "max_pages_per_host"
        if reason:
            self.discovery[f"skipped_{reason}"] += 1
            return
        self.seen.add(url)
        self.per_host[host_of(url)] += 1
        self.state.queue(self.crawl_id, [(url, depth, kind)])
        self.queue.put_nowait(Item(url, depth, kind))

    def _on_sitemaps(self, urls: list[str]) -> None:
        for url in urls:
            self._enqueue(normalize(url), 0, "sitemap")

    async def run(self) -> dict[str, Any]:
        """Crawl until the frontier is empty; returns discovery counts (outcomes live in the state store)."""
        known, todo = self.state.frontier(self.crawl_id)
        if known:  # a killed run of this crawl: carry on where its last committed batch ended
            self.seen = set(known)
            self.per_host.update(host_of(u) for u in known)
            for url, depth, kind in todo:
                self.queue.put_nowait(Item(url, depth, kind))
            self.discovery["resumed_pending"] = len(todo)
        else:
            for seed in self.seeds:
                self._enqueue(seed, 0, "page", seed=True)
        self.state.commit()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.cfg.concurrency)]
        joined = asyncio.create_task(self.queue.join())
        try:
            done, _ = await asyncio.wait([joined, *workers], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not joined:
                    task.result()  # a worker died: re-raise its bug instead of hanging on the queue
        finally:
            for task in [joined, *workers]:
                task.cancel()
            await asyncio.gather(joined, *workers, return_exceptions=True)
            await self.fetcher.aclose()
        self.writer.flush()
        self.state.commit()
        return {"discovery": dict(self.discovery), "robots_fetches": self.politeness.robots_fetches}

    async def _worker(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                finished = await self._process(item)
                self.state.finish(self.crawl_id, [finished])
                self.processed = getattr(self, "processed", 0) + 1  # the console's live line (tasks.core.progress)
                progress.update("crawl", done=self.processed, total=self.processed + self.queue.qsize(), unit="pages")
                self.since_flush += 1
                if self.since_flush >= self.cfg.flush_every:
                    self.writer.flush()  # files first, then the commit that marks their URLs done
                    self.state.commit()
                    self.since_flush = 0
            finally:
                self.queue.task_done()

    async def _process(self, item: Item) -> Finished:
        info = self.state.page(item.url) if self.cfg.incremental else None
        headers = {}
        if info and info.etag:
            headers["If-None-Match"] = info.etag
        if info and info.last_modified:
            headers["If-Modified-Since"] = info.last_modified
        res = await self.fetcher.fetch(item.url, headers)
        if res.final_url != item.url:  # a redirect target is fetched now: do not queue it again
            self.seen.add(normalize(res.final_url) or res.final_url)
        finished = Finished(item.url, res.outcome, res.error_kind, attempts=res.attempts, bytes=len(res.body))
        if res.outcome == "not_modified":
            self._follow(info.links if info else [], item.depth + 1, "page")  # 304 has no body: reuse old links
        elif res.outcome == "fetched":
            finished.doc, links = await self._handle_body(item, res)
            self.state.save_page(item.url, res.headers.get("etag"), res.headers.get("last-modified"),
                                 hashlib.sha256(res.body).hexdigest(), res.status, res.fetch_time, links)
        return finished

    def _follow(self, links: list[str], depth: int, kind: str) -> None:
        for link in links:
            self._enqueue(link, depth, kind)

    async def _handle_body(self, item: Item, res: FetchResult) -> tuple[str, list[str]]:
        ctype = res.headers.get("content-type", "")
        if item.kind in ("sitemap", "feed") or looks_like_xml_links(ctype.lower(), res.body):
            pages, sitemaps, is_sitemap = xml_links(res.body, res.final_url)
            # A sitemap lists pages as a seed would (same depth); a feed's items are one hop from the feed.
            self._follow(sitemaps, item.depth, "sitemap")
            self._follow(pages, item.depth + (0 if is_sitemap else 1), "page")
            return "", pages + sitemaps
        loop = asyncio.get_running_loop()
        page = await loop.run_in_executor(self.pool, extract_page, res.body, res.final_url, ctype,
                                          res.headers.get("content-language"), res.headers.get("x-robots-tag"),
                                          self.cfg.extract_fallback)
        links = [u for u in (normalize(link) for link in page.links) if u]
        self._follow(links, item.depth + 1, "page")
        self._follow([u for u in (normalize(f) for f in page.feeds) if u], item.depth + 1, "feed")
        if page.skip:
            return page.skip, links
        content_hash = hashlib.sha256(res.body).hexdigest()
        info = self.state.page(item.url) if self.cfg.incremental else None
        if info is not None and info.content_hash == content_hash:
            return "unchanged", links  # the server ignored our validators but the page is the same
        url = normalize(res.final_url) or res.final_url  # the doc id is the hash of the normalised URL
        if content_hash in self.doc_hashes or doc_id(url) in self.doc_ids:
            return "duplicate_content", links
        self.doc_hashes.add(content_hash)
        self.doc_ids.add(doc_id(url))
        self.writer.add_doc(doc_row(page, url=url, domain=host_of(url),
                                    fetch_time=res.fetch_time, http_status=res.status, content_hash=content_hash,
                                    warc_file=res.warc[0] or None, warc_record_id=res.warc[1] or None))
        return "emitted", links


def run_loop(crawler: Crawler) -> tuple[dict[str, Any], float]:
    """Run the crawl to completion on a fresh event loop; (discovery stats, seconds)."""
    started = time.monotonic()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        result = asyncio.run(crawler.run())
    else:  # called from async code (an async flow): give the crawl its own loop in its own thread
        with ThreadPoolExecutor(1, thread_name_prefix="lmforge-crawl") as thread:
            result = thread.submit(asyncio.run, crawler.run()).result()
    return result, time.monotonic() - started
