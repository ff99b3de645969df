"""GPU throughput of the `gpt_124m` preset: tokens/s and MFU with bf16 autocast + torch.compile, short run.

Runs the real trainer (`tasks.train.train.run_train`) on synthetic token shards (uniform random ids: throughput does not
depend on the text) so it needs nothing from the network. MFU = flops_per_token x tokens/s / peak bf16 FLOP/s, with
flops_per_token = 6 N_matmul + 12 L H D T (PaLM appendix B, as nanoGPT). Steps before `--skip` (compilation) are
excluded from the averages.

    .venv/bin/python bench/gpu.py [--steps 60] [--batch-size 32] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def gpt_124m_model():
    """The model of the `gpt_124m` preset, so the benchmark measures exactly what the preset trains."""
    from flows.presets import gpt_124m

    model = gpt_124m().train.model
    return model.model_copy(update={"vocab_size": gpt_124m().tokenize.vocab_size})


def synthetic_tokens(root: Path, n_tokens: int, vocab_size: int):
    from models.tokenizer import Tokenizer
    from tasks.core.artifacts import TokenSet, finish_stage
    from tasks.core.tokens import write_bin

    root.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.train(["synthetic benchmark text " * 50] * 10, vocab_size=300)
    tok.save(root / "tokenizer.json")
    rng = np.random.default_rng(0)
    write_bin(root / "train_00000.bin", rng.integers(0, vocab_size, n_tokens, dtype=np.int64), vocab_size)
    write_bin(root / "val_00000.bin", rng.integers(0, vocab_size, 1 << 16, dtype=np.int64), vocab_size)
    ref = TokenSet(
        path=str(root),
        tokenizer_file="tokenizer.json",
        vocab_size=tok.vocab_size,
        train_files=["train_00000.bin"],
        val_files=["val_00000.bin"],
        n_train_tokens=n_tokens,
        n_val_tokens=1 << 16,
        val_bytes=4 << 16,
    )
    return finish_stage(root, ref)


def main() -> None:
    import torch

    from tasks.train.train import TrainConfig, run_train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=20, help="steps excluded from the averages (compile warm-up)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "muon"])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="lmforge-gpu-")))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA device")
    model = gpt_124m_model()
    tokens = synthetic_tokens(args.out / "tokens", args.batch_size * 1024 * (args.steps + 2) + 1, model.vocab_size)
    cfg = TrainConfig(
        model=model,
        max_steps=args.steps,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=6e-4,
        warmup_steps=10,
        compile=not args.no_compile,
        checkpoint_every=0,
        eval_every=0,
        eval_batches=1,
        log_every=1,
        progress=False,
    )
    t0 = time.time()
    ref = run_train(cfg, tokens, args.out / "train")
    rows = [json.loads(line) for line in (args.out / "train" / "log.jsonl").read_text().splitlines()]
    steady = [r for r in rows if "train/tokens_per_s" in r and r["step"] > args.skip]
    tok_s = float(np.median([r["train/tokens_per_s"] for r in steady]))
    mfu = float(np.median([r["train/mfu"] for r in steady]))
    stats = ref.manifest()["stats"]
    print(
        f"\n## gpt_124m on {torch.cuda.get_device_name()} (bf16 autocast, compile={not args.no_compile}, {args.optimizer})\n"
    )
    print("| params | batch x seq | steps | median tokens/s | median MFU | flops/token | peak mem GiB | wall s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {ref.n_params / 1e6:.1f} M | {args.batch_size} x 1024 | {ref.step} | {tok_s:,.0f} | {100 * mfu:.1f} % | "
        f"{stats['flops_per_token'] / 1e6:.0f} M | {torch.cuda.max_memory_allocated() / 2**30:.1f} | {time.time() - t0:.0f} |"
    )


if __name__ == "__main__":
    main()
