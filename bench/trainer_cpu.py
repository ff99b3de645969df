"""CPU tokens/s of the real trainer (`run_train`) at the `tiny_cpu` preset, so a trainer change that slows the demo
shows up: synthetic token shards (uniform ids at the preset's vocabulary), one torch thread, no checkpoints or evals;
the median over log windows after the first (warm-up).

    .venv/bin/python bench/trainer_cpu.py [--steps 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from gpu import synthetic_tokens  # bench/ is this script's directory


def main() -> None:
    from flows.presets import tiny_cpu
    from tasks.train.train import TrainConfig, run_train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    preset = tiny_cpu()
    train = preset.train.model_dump()
    train["model"]["vocab_size"] = preset.tokenize.vocab_size
    train.update(
        max_steps=args.steps,
        max_seconds=None,
        checkpoint_every=0,
        eval_every=0,
        eval_batches=1,
        log_every=10,
        progress=False,
        threads=args.threads,
        device="cpu",
    )
    cfg = TrainConfig.model_validate(train)
    root = Path(tempfile.mkdtemp(prefix="lmforge-trainer-cpu-"))
    n_tokens = cfg.batch_size * cfg.model.seq_len * (args.steps + 2) + 1
    tokens = synthetic_tokens(root / "tokens", n_tokens, preset.tokenize.vocab_size)
    t0 = time.time()
    ref = run_train(cfg, tokens, root / "train")
    rows = [json.loads(line) for line in (root / "train" / "log.jsonl").read_text().splitlines()]
    windows = [r["train/tokens_per_s"] for r in rows if "train/tokens_per_s" in r][1:]
    print(f"\n## trainer on CPU, tiny_cpu preset ({ref.n_params / 1e6:.1f} M params, {args.threads} thread(s))\n")
    print("| steps | batch x seq | median tokens/s | min | max | wall s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    print(
        f"| {ref.step} | {cfg.batch_size} x {cfg.model.seq_len} | {statistics.median(windows):,.0f} | "
        f"{min(windows):,.0f} | {max(windows):,.0f} | {time.time() - t0:.0f} |"
    )


if __name__ == "__main__":
    main()
