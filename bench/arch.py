"""Architecture comparison on the demo corpus: `gpt`, `gpt2`, `rnn` (LSTM) and `gcnn` (gated causal convolutions) at
equal parameter count and equal CPU wall-clock, the table a user needs to pick `model.arch`.

Every arch gets width 128, context 128 and the demo tokenizer (vocab 4096, so the tied embedding is the same 524 k
parameters for all); its depth is the one whose parameter count is closest to the `tiny_cpu` GPT's. The runs race
step by step on one thread, always advancing the one with the least training time, so load from other processes
on a shared machine hits all alike (`bench/train.py`'s `Contender`); each stops when its own clock reaches the
budget. Prints val bits per byte and training tokens/s per arch, and the bpb curve.

    .venv/bin/python -m bench.arch [--budget 120] [--eval-every 30]
"""

from __future__ import annotations

import argparse

from bench.train import Contender, demo_tokens, tiny_model
from models.architectures.registry import ModelConfig, build_model
from tasks.train.train import TrainConfig

LR = {"gpt": 3e-3, "gpt2": 2e-3, "rnn": 3e-3, "gcnn": 3e-3}  # AdamW peak lr per arch (gpt/gpt2 as bench/train.py)


def matched(arch: str, vocab_size: int, target: int) -> ModelConfig:
    """The `tiny_cpu` config with `arch` and the depth whose parameter count is closest to `target`."""
    best = None
    for depth in range(1, 17):
        cfg = tiny_model().model_copy(update={"arch": arch, "n_layer": depth, "vocab_size": vocab_size})
        gap = abs(build_model(cfg).num_params() - target)
        if best is None or gap < best[0]:
            best = (gap, cfg)
    return best[1].model_copy(update={"vocab_size": 0})


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per arch")
    parser.add_argument("--eval-every", type=float, default=30.0, help="val bpb every N training seconds")
    parser.add_argument("--archs", default="gpt,gpt2,rnn,gcnn", help="comma-separated archs to compare")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: on a shared 2-core machine, two threads oversubscribe
    tokens = demo_tokens()
    print(
        f"demo corpus: {tokens.n_train_tokens:,} train / {tokens.n_val_tokens:,} val tokens, vocab {tokens.vocab_size}"
    )
    target = build_model(tiny_model().model_copy(update={"vocab_size": tokens.vocab_size})).num_params()
    base = {"max_steps": 10**6, "max_seconds": args.budget, "batch_size": 16, "warmup_steps": 20, "schedule": "cosine"}
    runs = [
        Contender(arch, TrainConfig(model=matched(arch, tokens.vocab_size, target), lr=LR[arch], **base), tokens)
        for arch in args.archs.split(",")
    ]
    next_eval = {c.name: args.eval_every for c in runs}
    while running := [c for c in runs if c.seconds < args.budget]:
        c = min(running, key=lambda c: c.seconds)
        c.train_step()
        if c.seconds >= next_eval[c.name] or c.seconds >= args.budget:
            c.evaluate(tokens)
            next_eval[c.name] += args.eval_every
    print(f"\n## Architectures at ~{target:,} parameters, {args.budget:.0f} s of training each (1 CPU thread)\n")
    print("| arch | layers x width | params | steps | train tokens/s | val bpb |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for c in sorted(runs, key=lambda c: c.points[-1][1]):
        m = c.cfg.model
        rate = c.step * c.cfg.batch_size * m.seq_len / c.seconds
        print(
            f"| {c.name} | {m.n_layer} x {m.n_embd} | {c.model.num_params():,} | {c.step} | {rate:,.0f} | "
            f"{c.points[-1][1]:.3f} |"
        )
    print("\nval bpb vs training seconds:")
    for c in runs:
        print(f"- {c.name}: " + ", ".join(f"{s:.0f}s {b:.3f}" for s, b in c.points))


if __name__ == "__main__":
    main()
