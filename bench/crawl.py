"""Crawl throughput on the demo corpus, next to the extraction-only bound it cannot beat.

Serves the demo corpus (Python 3.11 docs + Debian Reference, installed by `make corpus`) on 127.0.0.1 and crawls it
at concurrency 16, with trafilatura in the crawler's process (a thread) and in worker processes; then extracts the
same pages (the HTML bodies the crawl archived in its WARC) in one process and in the same number of worker
processes, with no fetching at all. Prints a table.

    .venv/bin/python bench/crawl.py [--workers 2] [--limit 600] [--roots python=/usr/share/doc/python3.11/html ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DEMO_ROOTS = {"python": "/usr/share/doc/python3.11/html", "debian-reference": "/usr/share/debian-reference"}


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the extraction workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _extract(page: tuple[bytes, str]) -> int:
    from tasks.collect.extract import extract_page

    return len(extract_page(page[0], page[1]).text)


def extraction_only(pages: list[tuple[bytes, str]], workers: int) -> float:
    started = time.perf_counter()
    if workers == 0:
        for page in pages:
            _extract(page)
    else:
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_extract, pages, chunksize=4))
    return time.perf_counter() - started


def crawl_once(roots: dict[str, str], workers: int, limit: int) -> tuple[float, dict, list[tuple[bytes, str]]]:
    """(seconds, stats, the HTML pages it archived as (body, url))."""
    from tasks.collect.config import CrawlConfig
    from tasks.collect.crawl import run_crawl
    from tasks.collect.local_site import LocalSiteConfig
    from tasks.collect.warc import iter_warc_pages

    with tempfile.TemporaryDirectory(prefix="lmforge-bench-crawl-") as tmp:
        cfg = CrawlConfig(local_site=LocalSiteConfig(roots=roots, port=0), concurrency=16, extract_workers=workers,
                          max_pages=limit, state_path=os.path.join(tmp, "state.sqlite"))
        started = time.perf_counter()
        ref = run_crawl(cfg, Path(tmp) / "out")
        seconds = time.perf_counter() - started
        pages = [(p.body, p.url) for w in sorted((ref.dir / "warc").glob("*.warc.gz"))
                 for p in iter_warc_pages(w, cfg.max_body_bytes, {})]
        return seconds, ref.manifest()["stats"], pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="extraction worker processes")
    parser.add_argument("--limit", type=int, default=2000, help="pages at most (whole corpus by default)")
    parser.add_argument("--roots", nargs="*", default=[f"{k}={v}" for k, v in DEMO_ROOTS.items()])
    args = parser.parse_args()
    roots = dict(r.split("=", 1) for r in args.roots)
    missing = [d for d in roots.values() if not Path(d).is_dir()]
    if missing:
        raise SystemExit(f"demo corpus missing: {missing}; run `make corpus` (needs apt) or pass --roots")
    _extract((b"<html><body><p>warm-up: imports are not what we measure</p></body></html>", "http://x.test/"))
    rows, pages = [], []
    for workers in (0, args.workers):
        cpu = cpu_seconds()
        seconds, stats, pages = crawl_once(roots, workers, args.limit)
        label = f"crawl c=16, extract {'in-process' if workers == 0 else f'{workers} procs'}"
        rows.append((label, stats["outcomes"].get("fetched", 0), seconds, cpu_seconds() - cpu, stats["n_docs"]))
    mb = sum(len(body) for body, _ in pages) / 1e6
    for workers in (0, args.workers):
        cpu = cpu_seconds()
        seconds = extraction_only(pages, workers)
        rows.append((f"extraction only, {'1 process' if workers == 0 else f'{workers} procs'}", len(pages),
                     seconds, cpu_seconds() - cpu, len(pages)))

    load = os.getloadavg()[0]
    print(f"\ncpus={os.cpu_count()}  load={load:.1f}  pages={len(pages)} HTML, {mb:.1f} MB  roots={list(roots)}\n")
    # CPU seconds (children included) say what the work costs even when other jobs share the cores.
    print(f"| {'run':<34} | {'pages':>5} | {'wall s':>7} | {'pages/s':>7} | {'CPU s':>6} | {'pages/CPU s':>11} "
          f"| {'docs':>5} |")
    print(f"|{'-' * 36}|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 13}|{'-' * 7}|")
    for label, n, seconds, cpu, docs in rows:
        print(f"| {label:<34} | {n:>5} | {seconds:>7.1f} | {n / seconds:>7.2f} | {cpu:>6.1f} | {n / cpu:>11.2f} "
              f"| {docs:>5} |")


if __name__ == "__main__":
    main()
