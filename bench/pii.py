"""PII benchmark (issue 13): our scrubber next to datatrove's PIIFormatter on data neither of them wrote.

1. Recall per kind and per locale on Faker's values (phone, card, IBAN, SSN, IPv4/6, e-mail providers; 14 locales)
   embedded in sentences with distractors (dates, versions, ISBNs, order numbers, timestamps, prices, coordinates,
   postcodes), the kept-word rate (non-PII words that survive) and the share of each distractor type left intact.
   The corpus is `tests/pii_corpus.py`, the generator the tests sample from, here at a larger size and another seed.
2. Speed (docs/s, one process) on those sentences and on real web pages (trafilatura's evaluation corpus,
   `../shared/data/extract/`, text extracted once and cached), with the replacements made per 1,000 real pages by
   kind: on pages that mostly hold no PII, every replacement is a candidate false positive.
3. Worst cases: seconds for one adversarial document (a base64 blob, a table of numbers, long digit runs).
4. Phone numbers in the wild (issue 25): many locales' Faker numbers next to phone cues in several languages,
   with labels touching them, dotted, with a "(0)" trunk prefix, from regions outside the default list; recall per
   form, and the kept-word rate with distractor sentences that put cue words next to dates, times, prices, versions.

`--baseline REV` adds the scrubber as it was at git revision REV (e.g. the commit before issue 13) to both tables.

Run from the repository root: `.venv/bin/python -m bench.pii [--per-locale 200] [--pages 300] [--baseline REV]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.pii_corpus import (KINDS, LOCALES, PHONE_CONTEXTS, PHONE_LOCALES, Score, generate, generate_phone_contexts,
                               score)

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("LMFORGE_BENCH_DIR", Path(tempfile.gettempdir()) / "lmforge-bench-pii"))
Scrubber = tuple[Callable[[str], str], tuple[str, ...], Callable[[str], dict[str, int]] | None]


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in row) + " |")


def ours() -> Scrubber:
    from tasks.core.pii import PLACEHOLDERS, scrub_pii

    return (lambda text: scrub_pii(text)[0]), tuple(PLACEHOLDERS.values()), (lambda text: scrub_pii(text)[1])


def datatrove() -> Scrubber:
    from datatrove.pipeline.formatters import PIIFormatter

    formatter = PIIFormatter()  # e-mails and public IPv4 only, replaced by fake addresses
    fakes = tuple(formatter.emails_replacer.replacements) + tuple(formatter.ip_replacer.replacements)

    def counts(text: str) -> dict[str, int]:
        ips = formatter.ip_replacer
        return {"email": sum(1 for _ in formatter.emails_replacer.regex.finditer(text)),
                "ip": sum(1 for m in ips.regex.finditer(text) if ips.validator(m.group(0)))}

    return formatter.format, fakes, counts


def _module_at(rev: str, path: str):
    """The module at `path` as it was at git revision `rev`, loaded into a throwaway module (None if it did not
    exist)."""
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode:
        return None
    file = WORK / rev / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location(f"{Path(path).stem}_{rev}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def baseline(rev: str) -> Scrubber:
    """`tasks/core/pii.py` as it was at git revision `rev`, with that revision's `pii_detect.py` where it had one."""
    import tasks.core
    import tasks.core.pii_detect

    current = tasks.core.pii_detect
    # `from tasks.core import pii_detect` in the old pii.py finds the package attribute
    tasks.core.pii_detect = _module_at(rev, "tasks/core/pii_detect.py") or current
    try:
        module = _module_at(rev, "tasks/core/pii.py")
    finally:
        tasks.core.pii_detect = current
    return (lambda text: module.scrub_pii(text)[0]), tuple(module.PLACEHOLDERS.values()), (
        lambda text: module.scrub_pii(text)[1])


def real_pages(shared: Path, n: int) -> list[str]:
    """Main text of the first `n` pages of trafilatura's evaluation corpus (extracted once, cached under WORK)."""
    archive = shared / "extract" / "trafilatura_eval.tar.xz"
    cache = WORK / "pages.json"
    WORK.mkdir(parents=True, exist_ok=True)
    if cache.exists():
        texts = json.loads(cache.read_text())
        if len(texts) >= n:
            return texts[:n]
    if not archive.exists():
        return []
    import trafilatura

    texts = []
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.startswith("tests/eval/") and m.isfile()),
                         key=lambda m: m.name)
        for member in members[:n]:
            html = tar.extractfile(member).read().decode("utf-8", errors="replace")
            texts.append(trafilatura.extract(html, fast=True) or "")
    cache.write_text(json.dumps(texts))
    return texts


def docs_per_s(scrub: Callable[[str], str], docs: list[str]) -> float:
    best = 0.0
    for _ in range(2):  # best of two: the machine is shared
        t0 = time.perf_counter()
        for text in docs:
            scrub(text)
        best = max(best, len(docs) / (time.perf_counter() - t0))
    return best


def worst_cases() -> dict[str, str]:
    """Inputs that make careless patterns slow: long runs of e-mail-local-part characters, digit tables."""
    import base64
    import random

    rng = random.Random(0)
    return {
        "base64 blob, 40 KB": base64.b64encode(rng.randbytes(30_000)).decode(),
        "number table, 1000 rows": "\n".join(f"{rng.randint(10**6, 10**9)} {rng.randint(10**6, 10**9)} "
                                             f"{rng.random():.6f}" for _ in range(1000)),
        "space-separated digits, 20 KB": " ".join(str(rng.randint(0, 999)) for _ in range(5000)),
        "dotted digits, 20 KB": ".".join(str(rng.randint(0, 999)) for _ in range(5000)),
    }


def phone_table(scrubbers: dict[str, Scrubber], per_locale: int, seed: int) -> None:
    samples = generate_phone_contexts(per_locale, seed=seed)
    scores = {name: score(samples, scrub, fakes) for name, (scrub, fakes, _) in scrubbers.items()}
    kinds = [f"phone: {context}" for context in PHONE_CONTEXTS]
    phones = [s for s in samples if s.kind in kinds]
    rows = [[kind, sum(s.kind == kind for s in samples), *(scores[n].recall.get(kind, 0.0) for n in scores)]
            for kind in kinds]
    rows.append(["phone, all forms", len(phones), *(
        sum(scores[n].recall[k] * sum(s.kind == k for s in phones) for k in kinds) / len(phones) for n in scores)])
    rows.append(["kept-word rate (non-PII words)", sum(len(f"{s.left} {s.right}".split()) for s in samples),
                 *(scores[n].kept_words for n in scores)])
    rows.append(["distractor sentences with cue words kept", sum(s.kind == "distractor:cue" for s in samples),
                 *(scores[n].kept_by_distractor["cue"] for n in scores)])
    table(f"Phone numbers in the wild ({len(PHONE_LOCALES)} locales, {per_locale} per form and locale where the "
          f"locale has the form, seed {seed})", ["form", "n", *scores], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-locale", type=int, default=200, help="samples per kind and locale")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pages", type=int, default=300, help="real web pages for speed and false positives")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data", help="shared data dir")
    parser.add_argument("--baseline", help="git revision whose tasks/core/pii.py to run alongside")
    parser.add_argument("--phone-per-locale", type=int, default=20,
                        help="samples per phone form and locale in the phones-in-the-wild corpus")
    args = parser.parse_args()

    scrubbers: dict[str, Scrubber] = {"ours": ours(), "datatrove PIIFormatter": datatrove()}
    if args.baseline:
        scrubbers[f"before ({args.baseline})"] = baseline(args.baseline)
    samples = generate(args.per_locale, seed=args.seed)
    scores: dict[str, Score] = {name: score(samples, scrub, fakes) for name, (scrub, fakes, _) in scrubbers.items()}
    names = list(scrubbers)

    n_values = {kind: sum(s.kind == kind for s in samples) for kind in KINDS}
    rows = [[kind, n_values[kind], *(scores[n].recall[kind] for n in names)] for kind in KINDS]
    rows.append(["kept-word rate (non-PII words)", sum(len(f"{s.left} {s.right}".split()) for s in samples),
                 *(scores[n].kept_words for n in names)])
    for kind in sorted(scores["ours"].kept_by_distractor):
        count = sum(s.kind == f"distractor:{kind}" for s in samples)
        rows.append([f"distractor kept: {kind}", count, *(scores[n].kept_by_distractor[kind] for n in names)])
    phone_table(scrubbers, args.phone_per_locale, args.seed)
    table(f"Recall per kind, Faker corpus ({len(LOCALES)} locales, {args.per_locale} per kind and locale, seed "
          f"{args.seed}); a value counts as caught when none of its 2+ character letter/digit runs is left",
          ["kind", "n", *names], rows)

    ours_by_locale = scores["ours"].recall_by_locale
    dt_by_locale = scores["datatrove PIIFormatter"].recall_by_locale
    table("Recall per locale: ours (datatrove PIIFormatter)", ["locale", *KINDS],
          [[locale, *(f"{ours_by_locale[locale][k]:.3f} ({dt_by_locale[locale][k]:.2f})"
                      if k in ours_by_locale[locale] else "—" for k in KINDS)] for locale in LOCALES])

    pages = real_pages(args.shared, args.pages)
    sentences = [s.text for s in samples]
    rows = []
    for name, (scrub, _, counts) in scrubbers.items():
        found: dict[str, int] = {}
        for text in pages:
            for kind, n in counts(text).items():
                found[kind] = found.get(kind, 0) + n
        per_1k = ", ".join(f"{k} {1000 * v / len(pages):.0f}" for k, v in found.items() if v) if pages else "—"
        rows.append([name, docs_per_s(scrub, sentences), docs_per_s(scrub, pages) if pages else "—", per_1k])
    where = f"{len(pages)} pages of trafilatura's eval corpus" if pages else f"no real pages ({args.shared} missing)"
    mean_chars = sum(map(len, pages)) / max(len(pages), 1)
    table(f"Speed, one process: {len(sentences)} corpus sentences; {where} (mean {mean_chars:.0f} chars)",
          ["scrubber", "sentences/s", "real pages/s", "replacements per 1k real pages"], rows)

    cases = worst_cases()
    rows = []
    for case, text in cases.items():
        row: list = [case]
        for scrub, _, _ in scrubbers.values():
            t0 = time.perf_counter()
            scrub(text)
            row.append(f"{time.perf_counter() - t0:.3f} s")
        rows.append(row)
    table("Worst cases: seconds for one document", ["document", *names], rows)


if __name__ == "__main__":
    main()
