"""How often does the promotion gate promote a challenger that differs from the champion only in its training seed?

Trains `--seeds` tiny models on the same data (real documentation text: the reStructuredText sources of the Python
docs, the demo corpus's `python3.11-doc` package), evaluates each on the same val split with per-document results,
and runs the real gate (`tasks.registry.register.gate_decision`) of every seed against the first seed's champion,
and of every ordered pair: the old point gate (any improvement promotes), the new gate with the eval items' noise
only (`seed_noise` 0), and the new gate with `seed_noise` measured on `--calibration` other seeds, taken as exact
(normal) and as what it is, an estimate from that many runs (Student's t, `seed_noise_runs`). One more run,
trained on 4x the in-domain tokens, checks that a real gain still passes. Prints a table; CPU-bound at one thread.

    .venv/bin/python -m bench.gate_noise --seeds 12 --calibration 8

Measured 2026-12-07 on the 2-core box (61 s CPU): 54 val documents, 73,799 tokens, 150 steps per run;
seed_noise = 0.0176 (std over 8 calibration seeds); a same-data challenger is promoted by

| gate | over seed 1 (11 same-data) | over any seed (132 ordered pairs) | 4x the data over seed 1 |
| --- | --- | --- | --- |
| old point gate | 3/11 (27 %) | 66/132 (50 %) | promoted |
| new, items only | 3/11 (27 %) | 59/132 (45 %) | promoted |
| new, seed_noise 0.0176 (normal) | 0/11 (0 %) | 8/132 (6 %) | promoted |
| new, seed_noise 0.0176 over 8 runs (t) | 0/11 (0 %) | 4/132 (3 %) | promoted |

The documents' spread alone (±0.0039 at 54 documents) is a fifth of a seed's: counting the eval items only still
promotes 45 %. Taking the 8-run standard deviation as exact promotes 6 %, over the 5 % the confidence promises;
drawing it from Student's t with 7 degrees of freedom (`registry.seed_noise_runs=8`) gives 3 %.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

DOCS = Path("/usr/share/doc/python3.11/html/_sources")


def corpus(max_docs: int, max_chars: int) -> list[str]:
    if not DOCS.is_dir():
        raise SystemExit(f"{DOCS} is missing: install the demo corpus (make corpus) or pass --docs")
    texts = [p.read_text(encoding="utf-8", errors="replace")[:max_chars] for p in sorted(DOCS.rglob("*.txt"))]
    return [t for t in texts if len(t) > 500][:max_docs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="same-config runs; the first is the champion")
    parser.add_argument("--calibration", type=int, default=8, help="other seeds that measure seed_noise")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--max-doc-tokens", type=int, default=None, help="evaluate.max_doc_tokens (smol_cpu: 512)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # the machine's cores are shared
    from models.architectures.registry import ModelConfig
    from tasks.core.artifacts import ShardSet
    from tasks.evaluate.evaluate import EvalConfig, run_evaluate
    from tasks.evaluate.items import load_items
    from tasks.registry.register import RegisterConfig, gate_decision, paired_difference, seed_noise_flags
    from tasks.tokenize.tokenize import TokenizeConfig, run_tokenize
    from tasks.train.train import TrainConfig, run_train

    t_start = time.process_time()
    with tempfile.TemporaryDirectory(prefix="lmforge-gate-noise-") as tmp:
        root = Path(tmp)
        shards = write_shards(root / "shards", corpus(args.docs, 4000), ShardSet)
        tokens = run_tokenize(TokenizeConfig(vocab_size=1024, val_fraction=0.15, workers=1, min_bytes_per_token=0.0),
                              shards, root / "tokens")
        model = ModelConfig(n_layer=2, n_embd=64, n_head=2, n_kv_head=1, seq_len=64)

        def run(seed: int, steps: int) -> tuple[dict, dict]:
            cfg = TrainConfig(model=model, max_steps=steps, batch_size=4, warmup_steps=10, lr=3e-3, seed=seed,
                              checkpoint_every=steps, eval_every=0, log_every=50, progress=False, threads=1)
            ckpt = run_train(cfg, tokens, root / f"train-{seed}-{steps}")
            out = root / f"eval-{seed}-{steps}"
            out.mkdir()
            report = run_evaluate(EvalConfig(prompts=[], max_val_tokens=None, max_doc_tokens=args.max_doc_tokens), ckpt, tokens, out)
            return report.metrics, load_items(report.dir)

        seeds = list(range(1, args.seeds + 1))
        runs = {seed: run(seed, args.steps) for seed in seeds}
        calibration = [run(100 + k, args.steps)[0]["val_bpb"] for k in range(args.calibration)]
        sigma = statistics.stdev(calibration) if len(calibration) > 1 else 0.0
        more_data = run(1, 4 * args.steps)
        n_docs, n_tokens = len(runs[1][1]["val_bpb"].ids), int(runs[1][0]["val_tokens"])
        sets = {"val": "same"}
        gates = {"old point gate": RegisterConfig(guard_metrics=[], gate_resamples=args.resamples),
                 "new, items only": RegisterConfig(guard_metrics=[], gate_resamples=args.resamples),
                 f"new, seed_noise {sigma:.4f} (normal)": RegisterConfig(
                     guard_metrics=[], gate_resamples=args.resamples, seed_noise={"val_bpb": sigma}),
                 f"new, seed_noise {sigma:.4f} over {len(calibration)} runs (t)": RegisterConfig(
                     guard_metrics=[], gate_resamples=args.resamples, seed_noise={"val_bpb": sigma},
                     seed_noise_runs=len(calibration))}

        def decide(name: str, cfg: RegisterConfig, new: tuple, old: tuple) -> tuple[bool, str]:
            if name == "old point gate":
                return gate_decision(cfg, new[0], sets, old[0], sets)  # no items: the point comparison
            return gate_decision(cfg, new[0], sets, old[0], sets, new[1], old[1])

        print(f"val split: {n_docs} documents, {n_tokens:,} tokens (max_doc_tokens {args.max_doc_tokens}); "
              f"{args.steps} steps per run; "
              f"seed_noise (std of val_bpb over {len(calibration)} calibration seeds) = {sigma:.4f}")
        print(f"measured, for lmforge: {seed_noise_flags('val_bpb', sigma, len(calibration))}")
        print("\n| seed | val_bpb | vs seed 1, items only | vs seed 1, seed_noise (normal) | vs seed 1, seed_noise (t) |")
        print("| --- | --- | --- | --- | --- |")
        for seed in seeds:
            tests = [paired_difference(gates[g], "val_bpb", runs[seed][1], runs[1][1]) for g in list(gates)[1:]]
            cells = " | ".join(t.describe() for t in tests) if seed > 1 else " | ".join(["champion"] * len(tests))
            print(f"| {seed} | {runs[seed][0]['val_bpb']:.4f} | {cells} |")
        n_pairs = len(seeds) * (len(seeds) - 1)
        print(f"\n| gate | promoted over seed 1 ({len(seeds) - 1} same-data) | over any seed ({n_pairs} ordered pairs) "
              "| 4x the data over seed 1 |")
        print("| --- | --- | --- | --- |")
        t_gate = time.process_time()
        decisions = 0
        for name, cfg in gates.items():
            first = sum(decide(name, cfg, runs[s], runs[1])[0] for s in seeds[1:])
            pairs = sum(decide(name, cfg, runs[a], runs[b])[0] for a in seeds for b in seeds if a != b)
            gain, why = decide(name, cfg, more_data, runs[1])
            decisions += len(seeds) + len(seeds) * (len(seeds) - 1)
            print(f"| {name} | {first}/{len(seeds) - 1} ({100 * first / (len(seeds) - 1):.0f} %) | {pairs}/"
                  f"{len(seeds) * (len(seeds) - 1)} ({100 * pairs / (len(seeds) * (len(seeds) - 1)):.0f} %) | "
                  f"{'promoted' if gain else 'refused'} |")
        # How wide is the interval on a smaller val split (the first k documents, as max_val_tokens keeps them)?
        print("\n| val documents | median half-width of the items-only interval, seeds 2.. vs seed 1 |")
        print("| --- | --- |")
        for k in sorted({k for k in (7, 14, 28) if k < n_docs} | {n_docs}):
            widths = []
            for seed in seeds[1:]:
                keep = set(runs[1][1]["val_bpb"].ids[:k])
                a_items, b_items = runs[seed][1]["val_bpb"].subset(keep), runs[1][1]["val_bpb"].subset(keep)
                test = paired_difference(gates["new, items only"], "val_bpb", {"val_bpb": a_items},
                                         {"val_bpb": b_items})
                widths.append((test.high - test.low) / 2)
            print(f"| {k} | ±{statistics.median(widths):.4f} |")
        print(f"\n4x the data vs seed 1: {decide('new', gates['new, items only'], more_data, runs[1])[1]}")
        print(f"gate CPU time: {1000 * (time.process_time() - t_gate) / decisions:.1f} ms per decision "
              f"({args.resamples} resamples x {n_docs} docs); whole bench {time.process_time() - t_start:.0f} s CPU")


def write_shards(root: Path, docs: list[str], shard_set):
    """Two Parquet shards with the curated schema (ids, text and the columns the tokenize stage passes through)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.core.schema import SHARD_SCHEMA

    root.mkdir(parents=True)
    files = []
    for index, part in enumerate((docs[: len(docs) // 2], docs[len(docs) // 2 :])):
        n = len(part)
        rows = {"id": [f"doc-{index}-{i}" for i in range(n)], "text": part,
                "url": [f"http://127.0.0.1/{index}/{i}" for i in range(n)], "domain": ["127.0.0.1"] * n,
                "crawl_date": ["2024-01-01T00:00:00Z"] * n, "language": ["en"] * n, "language_score": [1.0] * n,
                "quality_score": [None] * n, "minhash_cluster_size": [1] * n,
                "token_count": [len(d.split()) for d in part], "source_warc": [None] * n,
                "source_record_id": [None] * n, "source": ["crawl"] * n}
        files.append(f"shard_{index:05d}.parquet")
        pq.write_table(pa.Table.from_pydict(rows, schema=SHARD_SCHEMA), root / files[-1])
    return shard_set(path=str(root), files=files, n_docs=len(docs), n_bytes=sum(len(d.encode()) for d in docs))


if __name__ == "__main__":
    main()
