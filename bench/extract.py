"""Main-text extraction on trafilatura's own evaluation corpus: our `extract_page` beside trafilatura's settings.

Reads `../shared/data/extract/trafilatura_eval.tar.xz` (or `--corpus`), unpacks it into a temporary directory and
scores every extractor with the corpus's own helpers (`tests/eval_common.py`: whitespace-normalised `with`/`without`
snippet matching, the same scoring as trafilatura's CI gate, whose floors are fast 0.9195 and fallback 0.9253 F1).
Extractors run interleaved page by page in one process, so load from other work on the machine hits all alike, and
take turns going first on a page (going first costs ~8% more CPU); speed is pages per CPU second of this process
(`time.process_time`). Ours runs exactly as the crawler calls it (decoding, links, metadata, noindex included);
trafilatura's runners are the gate's (`extract(html_bytes, ...)`).

    .venv/bin/python bench/extract.py [--limit 200] [--corpus PATH.tar.xz]
"""

from __future__ import annotations

import argparse
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


def _runners(common: ModuleType) -> dict[str, Callable[[bytes, str], str | None]]:
    from trafilatura import extract

    from tasks.collect.extract import extract_page

    def ours(html: bytes, url: str) -> str | None:
        # noindex pages are dropped by policy, not by extraction: 12 corpus pages carry the directive
        return extract_page(html, url, honour_noindex=False).text or None

    def theirs(**settings: object) -> Callable[[bytes, str], str | None]:
        run = partial(extract, **common.EXTRACT_OPTS, **settings)
        return lambda html, url: run(html)

    return {"lmforge extract_page": ours, "trafilatura fast": theirs(fast=True),
            "trafilatura default": theirs(), "trafilatura favor_precision": theirs(favor_precision=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="trafilatura_eval.tar.xz (default: ../shared/data/extract/)")
    parser.add_argument("--limit", type=int, default=0, help="score the first N pages only (0 = all 990)")
    parser.add_argument("--only", nargs="*", help="extractor names to run (default: all)")
    args = parser.parse_args()
    archive = args.corpus or next((p for p in CANDIDATES if p.exists()), None)
    if archive is None or not archive.exists():
        sys.exit(f"bench/extract: no corpus at {args.corpus or CANDIDATES[0]}; pass --corpus PATH.tar.xz "
                 "(trafilatura's tests/ evaluation data)")
    with tempfile.TemporaryDirectory(prefix="lmforge-extract-bench-") as tmp:
        common = _unpack(archive, Path(tmp))
        here = str(Path(tmp) / "tests")
        evaldata = common.load_evaldata(here)
        docs = common.read_corpus(here, evaldata)
        urls = sorted(evaldata)[: args.limit or None]
        runners = {k: v for k, v in _runners(common).items() if not args.only or k in args.only}
        matrices = {name: common.ConfusionMatrix() for name in runners}
        seconds = dict.fromkeys(runners, 0.0)
        order = list(runners.items())
        for index, url in enumerate(urls):
            html = docs[url][1]
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
                matrices[name].add(common.count_item(evaldata[url], result))
    print(f"\n{len(urls)} pages of trafilatura's evaluation corpus ({archive.name}); CI floors: fast 0.9195, "
          "fallback 0.9253 F1\n")
    print(f"| {'extractor':<28} | F1     | precision | recall | accuracy | pages/s (CPU) |")
    print(f"|{'-' * 30}|--------|-----------|--------|----------|---------------|")
    for name, cm in matrices.items():
        precision, recall, accuracy, f1 = cm.scores()
        print(f"| {name:<28} | {f1:.4f} | {precision:.4f}    | {recall:.4f} | {accuracy:.4f}   | "
              f"{len(urls) / max(seconds[name], 1e-9):13.1f} |")


if __name__ == "__main__":
    main()
