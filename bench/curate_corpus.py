"""The demo corpus as a DocSet for the curate benchmark: Python 3.11 docs + Debian Reference (en/de/fr/ja) HTML on
this machine, extracted with the crawl stage's own `tasks.collect.extract.extract_page` (no HTTP server needed)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tasks.core.artifacts import DocSet, finish_stage, load_done, reset_dir

PYDOC = Path("/usr/share/doc/python3.11/html")
DEBREF = Path("/usr/share/debian-reference")


def _one(item: tuple[str, str]) -> dict | None:
    from tasks.collect.extract import doc_row, extract_page

    path, url = item
    body = Path(path).read_bytes()
    page = extract_page(body, url)
    if page.skip:
        return None
    return doc_row(page, url=url, domain=url.split("/")[2], fetch_time="2024-05-01T12:00:00Z", http_status=200,
                   content_hash=hashlib.sha256(body).hexdigest(), warc_file=None, warc_record_id=None)


def demo_pages() -> list[tuple[str, str]]:
    items = [(str(p), f"http://127.0.0.1:8000/python/{p.relative_to(PYDOC).as_posix()}")
             for p in sorted(PYDOC.rglob("*.html")) if "_static" not in p.parts]
    items += [(str(p), f"http://127.0.0.1:8000/debian-reference/{p.name}") for p in sorted(DEBREF.glob("*.html"))]
    return items


def demo_docset(out: Path, workers: int = 2) -> DocSet:
    """Extract the demo corpus once into `out` (cached by its manifest)."""
    if done := load_done(out, DocSet):
        return done
    from tasks.collect.extract import write_docs

    reset_dir(out)
    with ProcessPoolExecutor(workers) as pool:
        rows = [r for r in pool.map(_one, demo_pages(), chunksize=8) if r]
    write_docs(rows, out / "docs_00000.parquet")
    return finish_stage(out, DocSet(path=str(out), files=["docs_00000.parquet"], n_docs=len(rows)),
                        stats={"docs": len(rows)}, files=["docs_00000.parquet"])
