"""Downstream eval table for one model: HellaSwag / ARC-Easy / LAMBADA from ../shared/data/eval, chance beside.

    .venv/bin/python bench/eval_downstream.py --checkpoint .lmforge/runs/train/<hash>/step_000200 --limit 500
    .venv/bin/python bench/eval_downstream.py --model-uri models:/lmforge@champion

Reads the shared benchmark files when they exist and says so when they do not; `--text FILE` adds bits per byte on
any text/JSONL/Parquet file. Prints a markdown table and the seconds each benchmark took.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "eval"


def load(args: argparse.Namespace):
    if args.checkpoint:
        from models.weights.checkpoint import load_model

        model, tokenizer, _ = load_model(args.checkpoint, device=args.device)
        return model, tokenizer
    import tempfile
    from pathlib import Path

    from models.weights.checkpoint import load_model
    from tasks.core.tracking import TrackingConfig
    from tasks.registry.resolve import resolve_checkpoint

    # The registered model's artifacts hold the checkpoint directory; download it and load it directly.
    checkpoint = resolve_checkpoint(args.model_uri, Path(tempfile.mkdtemp(prefix="lmforge-eval-")), TrackingConfig())
    model, tokenizer, _ = load_model(checkpoint, device=args.device)
    return model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint directory (step_*/)")
    parser.add_argument("--model-uri", default="models:/lmforge@champion", help="used when --checkpoint is not given")
    parser.add_argument("--limit", type=int, default=500, help="items per benchmark")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--text", action="append", default=[], help="extra text file for bits per byte")
    args = parser.parse_args()

    from tasks.evaluate.evaluate import EvalConfig, evaluate_model

    files = {
        "hellaswag_file": SHARED / "hellaswag_val_full.txt.bz2",
        "arc_file": SHARED / "arc_easy_test.jsonl",
        "lambada_file": SHARED / "lambada_test.jsonl",
    }
    present = {key: str(path) for key, path in files.items() if path.is_file()}
    for key, path in files.items():
        if key not in present:
            print(f"note: {path} not found; {key.removesuffix('_file')} skipped")
    model, tokenizer = load(args)
    cfg = EvalConfig(max_downstream_examples=args.limit, prompts=[], text_files=args.text, **present)
    t0 = time.time()
    result = evaluate_model(model, tokenizer, cfg, None, args.device)
    m, stats = result["metrics"], result["stats"]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\nmodel: {args.checkpoint or args.model_uri} ({n_params:,} parameters), {time.time() - t0:.0f} s\n")
    print("| benchmark | n | acc | acc_norm | chance | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in ("hellaswag", "arc"):
        if f"{name}_acc" in m:
            print(f"| {name} | {m[name + '_n']:.0f} | {m[name + '_acc']:.4f} | {m[name + '_acc_norm']:.4f} | "
                  f"{m[name + '_chance']:.4f} | {stats[name + '_seconds']:.0f} |")
    if "lambada_acc" in m:
        print(f"| lambada (last word) | {m['lambada_n']:.0f} | {m['lambada_acc']:.4f} | — | ~0 | "
              f"{stats['lambada_seconds']:.0f} |")
    for key in sorted(k for k in m if k.startswith("text/") and k.endswith("_bpb")):
        print(f"| {key} | {m[key.replace('_bpb', '_tokens')]:.0f} tok | {m[key]:.4f} bpb | | | |")


if __name__ == "__main__":
    main()
