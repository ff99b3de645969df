"""Curate benchmarks (issue 4), printed as tables:

1. throughput (docs/s/core) of `run_curate` vs. bare datatrove running the same steps on the same input;
2. language-ID accuracy on real multilingual pages (Debian Reference en/de/fr/ja, translated man pages);
3. MinHash near-dedup precision/recall on planted near-duplicates at several edit rates (FineWeb settings);
4. quality-classifier precision/recall on its held-out split (demo choice: narrative docs vs. API reference).

Run: `.venv/bin/python bench/curate.py [--docs N]`. Uses the demo corpus installed on this machine.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import tempfile
import time
from pathlib import Path

from curate_corpus import demo_docset  # bench/ is on sys.path when run as a script

from tasks.core.artifacts import DocSet, reset_dir

WORK = Path(os.environ.get("LMFORGE_BENCH_DIR", Path(tempfile.gettempdir()) / "lmforge-bench-curate"))


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in row) + " |")


def rows_of(docs: DocSet) -> list[dict]:
    import pyarrow.parquet as pq

    return [r for f in docs.files for r in pq.read_table(docs.dir / f).to_pylist()]


def subset(docs: DocSet, n: int, out: Path) -> DocSet:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.core.schema import DOC_SCHEMA

    rows = random.Random(0).sample(rows_of(docs), min(n, docs.n_docs))
    reset_dir(out)
    pq.write_table(pa.Table.from_pylist(rows, schema=DOC_SCHEMA), out / "docs.parquet")
    return DocSet(path=str(out), files=["docs.parquet"], n_docs=len(rows))


def bench_throughput(docs: DocSet, workers: int) -> None:
    """run_curate vs. the same step lists run by plain LocalPipelineExecutor (no splitting/stats/manifest)."""
    from datatrove.executor.local import LocalPipelineExecutor

    import tasks.curate.pipeline as cp
    from tasks.core.executors import merged_stats
    from tasks.curate.curate import CurateConfig, run_curate, split_input

    def bare_runner(steps, *, name, tasks, workers, logging_dir, **_):
        LocalPipelineExecutor(steps, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logging_dir)).run()
        return merged_stats(logging_dir)

    cfg = CurateConfig(profile="docs", tasks=workers, workers=workers)
    results: dict[str, list[float]] = {"lmforge run_curate": [], "bare datatrove": []}
    for trial in range(2):  # interleaved, best of two: the machine is shared
        out = reset_dir(WORK / f"tp_ours_{trial}")
        t = time.time()
        run_curate(cfg, docs, out)
        results["lmforge run_curate"].append(time.time() - t)
        out = reset_dir(WORK / f"tp_bare_{trial}")
        split_input(docs, cfg.tasks, out / "work" / "input")  # the bare run needs its input split too
        original, cp.run_pipeline = cp.run_pipeline, bare_runner
        try:
            t = time.time()
            cp.build_and_run(cfg, out, docs.n_docs, index_root=out / "index")
            results["bare datatrove"].append(time.time() - t)
        finally:
            cp.run_pipeline = original
    best = {k: min(v) for k, v in results.items()}
    rows = [[k, docs.n_docs, workers, round(best[k], 1), docs.n_docs / best[k] / workers] for k in results]
    overhead = best["lmforge run_curate"] / best["bare datatrove"] - 1
    table(f"Throughput, profile=docs, {docs.n_docs} docs (overhead {overhead:+.1%})",
          ["pipeline", "docs", "cores", "best wall s", "docs/s/core"], rows)


def man_text(path: Path) -> str:
    raw = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    lines = [ln for ln in raw.splitlines() if not ln.startswith((".", "'"))]
    text = re.sub(r"\\f[BIRP]|\\\(..|\\[-&e]|\\s[-+]?\d", "", "\n".join(lines))
    return text.replace("\\", "")


def bench_language_id(docs: DocSet) -> None:
    from tasks.curate.filters import LanguageIDFilter

    lid = LanguageIDFilter([], threshold=0.0)
    samples: list[tuple[str, str, str]] = []  # (source, truth, text)
    for row in rows_of(docs):
        if re.search(r"\.(en|de|fr|ja)\.html$", row["url"]):
            samples.append(("debian-reference", row["url"].rsplit(".", 2)[-2], row["text"]))
    for lang in ("de", "fr", "ja", "es", "it", "ru"):
        pages = sorted(Path(f"/usr/share/man/{lang}").rglob("*.gz"))[:40]
        samples += [("man pages", lang, t) for t in map(man_text, pages) if len(t) > 300]
    rows = []
    for source in ("debian-reference", "man pages"):
        for lang in sorted({s[1] for s in samples if s[0] == source}):
            texts = [t for s, lg, t in samples if s == source and lg == lang]
            preds = [lid.predict(t) for t in texts]
            right = [p for p in preds if p[0] == lang]
            kept = [p for p in right if p[1] >= 0.65]
            rows.append([source, lang, len(texts), len(right) / len(texts), len(kept) / len(texts)])
    table("Language ID (fasttext lid.176.ftz)", ["source", "language", "pages", "accuracy (argmax)",
                                                  "kept at FineWeb threshold 0.65"], rows)


def bench_minhash(docs: DocSet) -> None:
    from datatrove.data import Document
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup import minhash as mh
    from datatrove.utils.hashing import HashConfig

    cfg = mh.MinhashConfig(hash_config=HashConfig(precision=64))  # FineWeb: 5-grams, 14 buckets x 8 hashes
    base = [r["text"] for r in rows_of(docs) if "/python/" in r["url"] and 300 < len(r["text"].split()) < 3000][:120]

    def removed(texts: list[str], tag: str) -> set[int]:
        d = reset_dir(WORK / f"mh_{tag}")
        documents = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        runs = [[documents, mh.MinhashDedupSignature(str(d / "sigs"), config=cfg)],
                [mh.MinhashDedupBuckets(str(d / "sigs"), str(d / "buckets"), config=cfg)],
                [mh.MinhashDedupCluster(str(d / "buckets"), str(d / "clusters"), config=cfg)]]
        for i, steps in enumerate(runs):
            LocalPipelineExecutor(steps, tasks=cfg.num_buckets if i == 1 else 1, workers=1,
                                  logging_dir=str(d / f"logs{i}")).run()
        kept = list(mh.MinhashDedupFilter(str(d / "clusters")).run(iter(documents)))
        return set(range(len(texts))) - {int(x.id) for x in kept}

    already = removed(base, "base")  # the docs have near-duplicates of their own: leave them out
    clean = [t for i, t in enumerate(base) if i not in already][:100]
    rows = []
    for rate in (0.01, 0.05, 0.1, 0.2, 0.3):
        rng = random.Random(int(rate * 1000))
        planted = rng.sample(range(len(clean)), 30)
        vocab = " ".join(clean).split()
        dups = []
        for i in planted:
            words = clean[i].split()
            for j in rng.sample(range(len(words)), int(len(words) * rate)):
                words[j] = rng.choice(vocab)
            dups.append(" ".join(words))
        gone = removed(clean + dups, f"r{rate}")
        pair_of = {i: k for k, i in enumerate(planted)} | {len(clean) + k: k for k in range(len(planted))}
        true_pos = {pair_of[g] for g in gone if g in pair_of}
        false_pos = [g for g in gone if g not in pair_of]
        precision = (len(gone) - len(false_pos)) / len(gone) if gone else 1.0
        rows.append([rate, len(clean), len(planted), len(gone), precision, len(true_pos) / len(planted)])
    table("MinHash near-dedup, FineWeb settings (5-grams, 14x8), planted word-substitution duplicates",
          ["edit rate", "originals", "planted dups", "removed", "precision", "recall (pairs)"], rows)


def bench_quality(docs: DocSet) -> None:
    from tasks.curate.quality import QualityClassifierConfig, train_quality_classifier

    rows = rows_of(docs)
    narrative = ("/tutorial/", "/howto/", "/faq/", "/whatsnew/")
    positives = [r["text"] for r in rows if any(p in r["url"] for p in narrative)]
    positives += [r["text"] for r in rows if r["url"].endswith(".en.html")]
    negatives = [r["text"] for r in rows if "/c-api/" in r["url"] or "genindex" in r["url"]]
    _, m = train_quality_classifier(QualityClassifierConfig(), positives, negatives, WORK / "quality")
    table("Quality classifier (fasttext; hq = narrative docs + Debian Reference en, lq = C-API reference + "
          "indices), held-out 20 %", ["positives", "negatives", "n test", "precision", "recall", "f1"],
          [[len(positives), len(negatives), int(m["n_test"]), m["precision"], m["recall"], m["f1"]]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200, help="documents in the throughput runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=["throughput", "lid", "minhash", "quality"])
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LMFORGE_HOME", str(WORK / "home"))
    corpus = demo_docset(WORK / "corpus")
    print(f"demo corpus: {corpus.n_docs} pages extracted ({corpus.dir})")
    benches = {"lid": bench_language_id, "minhash": bench_minhash, "quality": bench_quality,
               "throughput": lambda d: bench_throughput(subset(d, args.docs, WORK / "subset"), args.workers)}
    for name in args.only:
        benches[name](corpus)


if __name__ == "__main__":
    main()
