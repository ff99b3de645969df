"""Contamination check throughput on the demo corpus: the 13-gram index of the full HellaSwag/ARC/LAMBADA files,
streamed over the corpus' documents, as the evaluate stage's check and curation's decontamination step run it.

    PYTHONPATH=$PWD .venv/bin/python bench/contamination.py [--salt 100]

Corpus: the demo's Python 3.11 docs + Debian Reference, extracted once (`curate_corpus.demo_docset`, needs
`make corpus`). Eval files: `../shared/data/eval/` (hellaswag_val_full.txt.bz2, arc_easy_test.jsonl,
lambada_test.jsonl; `--eval-dir` elsewhere). Rows: building the index; scanning Parquet text (the curate step's
input); the same through the datatrove filter (`DecontaminationFilter`, its per-document overhead included);
decoding token documents then scanning (the evaluate stage's check reads the train split's token shards). `--salt N`
copies N HellaSwag items into random documents first and reports how many the scan finds (it must be all N).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from curate_corpus import demo_docset  # bench/ is on sys.path when run as a script

from tasks.core.benchmarks import item_texts
from tasks.core.ngrams import NGramIndex, ngrams, words

WORK = Path(os.environ.get("LMFORGE_BENCH_DIR", Path(tempfile.gettempdir()) / "lmforge-bench-curate"))
EVAL_FILES = {"hellaswag": "hellaswag_val_full.txt.bz2", "arc": "arc_easy_test.jsonl", "lambada": "lambada_test.jsonl"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", default=str(Path(__file__).resolve().parents[1] / "../shared/data/eval"))
    parser.add_argument("--salt", type=int, default=100, help="HellaSwag items copied into corpus documents.")
    parser.add_argument("--repeat", type=int, default=3, help="Passes over the corpus per timed row (best kept).")
    args = parser.parse_args()

    corpus = demo_docset(WORK / "corpus")
    texts = [t for f in corpus.files for t in pq.read_table(corpus.dir / f, columns=["text"]).column("text").to_pylist()]
    n_bytes = sum(len(t.encode()) for t in texts)
    t0 = time.perf_counter()
    sets = {k: item_texts(k, Path(args.eval_dir) / name) for k, name in EVAL_FILES.items()
            if (Path(args.eval_dir) / name).is_file()}
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = NGramIndex(sets)
    build_s = time.perf_counter() - t0
    plain = index.overlaps((str(i), t) for i, t in enumerate(texts))  # the demo corpus as it is
    rng = random.Random(0)
    salted = rng.sample(sorted(sets["hellaswag"], key=int), args.salt) if "hellaswag" in sets and args.salt else []
    for item in salted:  # the context and its gold ending... any one of its texts is what a page would quote
        i = rng.randrange(len(texts))
        texts[i] = f"{texts[i]}\n\n{sets['hellaswag'][item][0]}\n\n"

    rows = [("eval sets read", f"{sum(map(len, sets.values())):,} items ({', '.join(sets)})", f"{read_s:.2f} s", ""),
            ("index built", f"{len(index.hashes):,} hashes, {index.nbytes / 2**20:.1f} MiB", f"{build_s:.2f} s", "")]

    def timed(label: str, scan) -> dict:
        best, found = float("inf"), {}
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            found = scan()
            best = min(best, time.perf_counter() - t0)
        rows.append((label, f"{len(texts):,} docs, {n_bytes / 2**20:.1f} MiB", f"{best:.2f} s",
                     f"{len(texts) / best:,.0f} docs/s, {n_bytes / 2**20 / best:.1f} MiB/s"))
        return found

    found = timed("scan Parquet text", lambda: index.overlaps((str(i), t) for i, t in enumerate(texts)))
    step = decontamination_step([f"{k}:{Path(args.eval_dir) / name}" for k, name in EVAL_FILES.items() if k in sets])
    timed("datatrove DecontaminationFilter", lambda: sum(1 for _ in step.run(documents(texts))))
    timed("decode tokens + scan", decode_and_scan(index, texts))

    print(f"demo corpus: {corpus.path} ({len(texts):,} documents); eval files from {args.eval_dir}\n")
    print(f"| {'step':<32} | {'size':<38} | {'time':>8} | {'throughput':<30} |")
    print(f"| {'-' * 32} | {'-' * 38} | {'-' * 8} | {'-' * 30} |")
    for label, size, seconds, rate in rows:
        print(f"| {label:<32} | {size:<38} | {seconds:>8} | {rate:<30} |")
    for name in sets:
        ids = sorted((i for s, i in plain if s == name), key=int)
        print(f"{name}: {len(ids)} of {len(sets[name]):,} items share a 13-gram with the demo corpus {ids[:10]}")
    hits = {i for s, i in found if s == "hellaswag" and i in set(salted)}
    print(f"salted HellaSwag items found: {len(hits)} / {len(salted)}")
    extra = sorted({i for s, i in found if s == "hellaswag"} - set(salted) - {i for s, i in plain}, key=int)
    def grams(i: str) -> set[tuple[str, ...]]:
        return {g for text in sets["hellaswag"][i] for g in ngrams(words(text))}

    salted_grams = set().union(*map(grams, salted)) if salted else set()
    shared = [i for i in extra if grams(i) & salted_grams]
    print(f"other HellaSwag items flagged in the salted corpus: {len(extra)}, of which {len(shared)} share a 13-gram "
          "with a salted item (HellaSwag items cut from one video or article share their context)")


def decontamination_step(eval_files: list[str]):
    """The curate step; it builds its index on its first document, so the best of several passes excludes that."""
    from tasks.curate.filters import DecontaminationFilter

    return DecontaminationFilter(eval_files)


def documents(texts: list[str]):
    from datatrove.data import Document

    return (Document(text=t, id=str(i)) for i, t in enumerate(texts))


def decode_and_scan(index: NGramIndex, texts: list[str]):
    """The evaluate stage's read: token documents decoded, then scanned (encoding, done once, is not timed)."""
    from models.text.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(texts[:2000], vocab_size=4096, min_frequency=2)
    encoded = tokenizer.encode_batch(texts)
    return lambda: index.overlaps((str(i), tokenizer.decode(ids)) for i, ids in enumerate(encoded))


if __name__ == "__main__":
    main()
