"""Main-text extraction on trafilatura's own evaluation corpus: our `extract_page` beside trafilatura's settings.

Reads `../shared/data/extract/trafilatura_eval.tar.xz` (or `--corpus`), unpacks it into a temporary directory and
scores every extractor with the corpus's own helpers (`tests/eval_common.py`: whitespace-normalised `with`/`without`
snippet matching, the same scoring as trafilatura's CI gate, whose floors are fast 0.9195 and fallback 0.9253 F1).
Extractors run interleaved page by page in one process, so load from other work on the machine hits all alike, and
take turns going first on a page (going first costs ~8% more CPU); speed is pages per CPU second of this process
(`time.process_time`). Ours runs exactly as the crawler calls it (decoding, links, metadata, noindex included);
trafilatura's runners are the gate's (`extract(html_bytes, ...)`).

`--html-dir DIR` times the same extractors on every *.html under DIR instead (no gold text there: pages/s and mean
characters extracted), e.g. a Debian documentation site, to see speed on pages unlike the corpus's articles.

    .venv/bin/python bench/extract.py [--limit 200] [--corpus PATH.tar.xz]
    .venv/bin/python bench/extract.py --html-dir /usr/share/doc/python3.11/html --limit 300
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]

CORPUS_NAME = Path("data") / "extract" / "trafilatura_eval.tar.xz"
CANDIDATES = [ROOT.parent / "shared" / CORPUS_NAME, ROOT.parent.parent / "shared" / CORPUS_NAME]  # main, worktree


def _unpack(archive: Path, into: Path) -> ModuleType:
    """Unpack the corpus (pages, annotations, scoring helpers) and import its `eval_common`."""
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    spec = importlib.util.spec_from_file_location("eval_common", into / "tests" / "eval_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# trafilatura's CI gate settings (its tests/eval_common.py EXTRACT_OPTS), for pages outside the corpus
GATE_OPTS = {"include_comments": False, "include_tables": True, "include_formatting": False}


def _runners(extract_opts: dict[str, bool]) -> dict[str, Callable[[bytes, str], str | None]]:
    from trafilatura import extract

    from tasks.collect.extract import extract_page

    def ours(html: bytes, url: str) -> str | None:
        # noindex pages are dropped by policy, not by extraction: 12 corpus pages carry the directive
        return extract_page(html, url, honour_noindex=False).text or None

    def theirs(**settings: object) -> Callable[[bytes, str], str | None]:
        run = partial(extract, **extract_opts, **settings)
        return lambda html, url: run(html)

    return {"lmforge extract_page": ours, "trafilatura fast": theirs(fast=True),
            "trafilatura default": theirs(), "trafilatura favor_precision": theirs(favor_precision=True)}


def _run_interleaved(pages: list[tuple[str, bytes]], runners: dict[str, Callable[[bytes, str], str | None]],
                     on_result: Callable[[str, str, str | None], None]) -> dict[str, float]:
    """CPU seconds per extractor over `pages` ((url, html) pairs); each result goes to `on_result(name, url, text)`."""
    seconds = dict.fromkeys(runners, 0.0)
    order = list(runners.items())
    for index, (url, html) in enumerate(pages):
        # Each extractor goes first on an equal share of pages: whichever runs first on a page takes ~8% more
        # CPU (measured by running one extractor twice per page), so a fixed order would tax the first one.
        turn = index % len(order)
        for name, run in order[turn:] + order[:turn]:
            started = time.process_time()
            try:
                result = run(html, url)
            except Exception as exc:  # noqa: BLE001 - a crash is a full miss, as in the corpus's own scoring
                print(f"{name}: {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
                result = None
            seconds[name] += time.process_time() - started
            on_result(name, url, result)
    return seconds


def _select(runners: dict[str, Callable[[bytes, str], str | None]], only: list[str] | None):  # type: ignore[no-untyped-def]
    return {name: run for name, run in runners.items() if not only or name in only}


def _score_corpus(archive: Path, limit: int, only: list[str] | None) -> None:
    with tempfile.TemporaryDirectory(prefix="lmforge-extract-bench-") as tmp:
        common = _unpack(archive, Path(tmp))
        here = str(Path(tmp) / "tests")
        evaldata = common.load_evaldata(here)
        docs = common.read_corpus(here, evaldata)
        urls = sorted(evaldata)[: limit or None]
        runners = _select(_runners(common.EXTRACT_OPTS), only)
        matrices = {name: common.ConfusionMatrix() for name in runners}
        seconds = _run_interleaved([(url, docs[url][1]) for url in urls], runners,
                                   lambda name, url, text: matrices[name].add(common.count_item(evaldata[url], text)))
    print(f"\n{len(urls)} pages of trafilatura's evaluation corpus ({archive.name}); CI floors: fast 0.9195, "
          "fallback 0.9253 F1\n")
    print(f"| {'extractor':<28} | F1     | precision | recall | accuracy | pages/s (CPU) |")
    print(f"|{'-' * 30}|--------|-----------|--------|----------|---------------|")
    for name, cm in matrices.items():
        precision, recall, accuracy, f1 = cm.scores()
        print(f"| {name:<28} | {f1:.4f} | {precision:.4f}    | {recall:.4f} | {accuracy:.4f}   | "
              f"{len(urls) / max(seconds[name], 1e-9):13.1f} |")


def _time_directory(directory: Path, limit: int, only: list[str] | None) -> None:
    # glob, not Path.rglob: doc packages link their HTML in through symlinked directories
    files = sorted(Path(name) for name in glob.glob(str(directory / "**" / "*.html"), recursive=True))[: limit or None]
    if not files:
        sys.exit(f"bench/extract: no *.html under {directory}")
    pages = [(f"http://local.test/{path.relative_to(directory).as_posix()}", path.read_bytes()) for path in files]
    runners = _select(_runners(GATE_OPTS), only)
    chars = dict.fromkeys(runners, 0)

    def count(name: str, url: str, text: str | None) -> None:
        chars[name] += len(text or "")

    seconds = _run_interleaved(pages, runners, count)
    print(f"\n{len(pages)} pages under {directory} (no gold text: speed and output size only)\n")
    print(f"| {'extractor':<28} | pages/s (CPU) | chars/page |")
    print(f"|{'-' * 30}|---------------|------------|")
    for name in runners:
        print(f"| {name:<28} | {len(pages) / max(seconds[name], 1e-9):13.1f} | {chars[name] // len(pages):10d} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="trafilatura_eval.tar.xz (default: ../shared/data/extract/)")
    parser.add_argument("--html-dir", type=Path, help="time the extractors on every *.html under this directory")
    parser.add_argument("--limit", type=int, default=0, help="the first N pages only (0 = all)")
    parser.add_argument("--only", nargs="*", help="extractor names to run (default: all)")
    args = parser.parse_args()
    if args.html_dir is not None:
        _time_directory(args.html_dir, args.limit, args.only)
        return
    archive = args.corpus or next((p for p in CANDIDATES if p.exists()), None)
    if archive is None or not archive.exists():
        sys.exit(f"bench/extract: no corpus at {args.corpus or CANDIDATES[0]}; pass --corpus PATH.tar.xz "
                 "(trafilatura's tests/ evaluation data)")
    _score_corpus(archive, args.limit, args.only)


if __name__ == "__main__":
    main()
