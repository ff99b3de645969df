"""GPU throughput of the `gpt_124m` preset: tokens/s, MFU and peak memory on 1 GPU and, where there are more, with DDP
and FSDP2 on all of them (bf16 autocast + torch.compile, short runs of the real trainer).

Runs `tasks.train.train.run_train` (1 GPU, in this process) and the train task's own torchrun launch
(`tasks.train.launch`, DDP and FSDP) on synthetic token shards (uniform random ids: throughput does not depend on the
text), so it needs nothing from the network. MFU = flops_per_token x tokens/s / (GPUs x peak bf16 FLOP/s), with
flops_per_token = 6 N_matmul + 12 L H D T (PaLM appendix B, as nanoGPT) and the peak from `models.hardware.flops`'s
exact-name table (a GPU missing there prints n/a). Steps up to `--skip` (compilation) are left out of the medians;
peak memory is CUDA's max allocated per log window, the largest window's.

    .venv/bin/python bench/gpu.py [--steps 60] [--batch-size 32] [--no-compile] [--only 1gpu|ddp|fsdp]
    .venv/bin/python bench/gpu.py --vs-nanochat 300

`--vs-nanochat SECONDS` runs instead `bench/trainer_vs_nanochat.py` on the GPU at nanochat's d12 settings (the
`gpt_124m` preset: 12 x 768, context 1024, its recipe; nanochat's GPT and MuonAdamW at the same shape, bf16): each
trains SECONDS of wall-clock time in turn on the demo corpus' tokens (a 50304-token BPE of the python3.11 docs) and
the script prints both curves and lmforge's time-to-quality ratio. One micro-batch (32 x 1024 tokens) per step for
both: the demo corpus holds a few million tokens, a handful of the preset's 0.5 M-token steps.
"""

from __future__ import annotations

import argparse
import gc
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
    from models.text.tokenizer import Tokenizer
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


def measure(log: Path, skip: int) -> tuple[float, float, float]:
    """(median tokens/s, median MFU, peak GiB) over the logged steps after `skip`."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    steady = [r for r in rows if "train/tokens_per_s" in r and r["step"] > skip]
    if not steady:
        raise SystemExit(f"{log}: no logged step after --skip {skip}; raise --steps")
    tok_s = float(np.median([r["train/tokens_per_s"] for r in steady]))
    mfu = float(np.median([r.get("train/mfu", 0.0) for r in steady]))  # absent: GPU not in PEAK_FLOPS
    return tok_s, mfu, max(r.get("train/peak_mem_gib", float("nan")) for r in steady)


def main() -> None:
    import torch

    from tasks.train.launch import launch
    from tasks.train.train import TrainConfig, run_train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=20, help="steps excluded from the averages (compile warm-up)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences of 1024 tokens per GPU per step")
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "muon"], help="muon: 1 GPU and DDP only")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--only", choices=["1gpu", "ddp", "fsdp"], help="run one configuration only")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="lmforge-gpu-")))
    parser.add_argument("--vs-nanochat", type=float, metavar="SECONDS",
                        help="compare with nanochat at d12 for SECONDS of training each (bench/trainer_vs_nanochat.py)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA device")
    if args.vs_nanochat:
        import subprocess
        import sys

        script = Path(__file__).with_name("trainer_vs_nanochat.py")
        raise SystemExit(subprocess.call([
            sys.executable, str(script), "--preset", "gpt_124m", "--device", "cuda", "--clock", "wall",
            "--budget", str(args.vs_nanochat), "--variant", "lmforge gpt_124m:tokens_per_step=0",
        ]))
    n_gpus = torch.cuda.device_count()
    model = gpt_124m_model()
    n_tokens = args.batch_size * model.seq_len * n_gpus * (args.steps + 2) + 1
    tokens = synthetic_tokens(args.out / "tokens", n_tokens, model.vocab_size)
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
        nproc_per_node=1,
    )
    runs = [("1gpu", 1)] + ([("ddp", n_gpus), ("fsdp", n_gpus)] if n_gpus > 1 else [])
    runs = [(name, n) for name, n in runs if args.only in (None, name)]
    if args.optimizer == "muon":
        runs = [(name, n) for name, n in runs if name != "fsdp"]  # Muon needs whole matrices
    results = []
    for name, n in runs:
        t0 = time.time()
        out = args.out / name
        if n == 1:
            run_train(cfg, tokens, out)
            gc.collect()
            torch.cuda.empty_cache()  # hand this process's cached blocks back before the ranks start on GPU 0
        else:
            launch(cfg.model_copy(update={"distributed": name, "nproc_per_node": n}), tokens, out, None, n)
        results.append((name, n, *measure(out / "log.jsonl", args.skip), time.time() - t0))
    print(
        f"\n## gpt_124m on {torch.cuda.get_device_name()} (bf16 autocast, compile={not args.no_compile}, "
        f"{args.optimizer}, {args.batch_size} x {model.seq_len} tokens per GPU per step, {args.steps} steps)\n"
    )
    print("| run | GPUs | median tokens/s | median MFU | peak mem GiB (per GPU) | wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, n, tok_s, mfu, mem, wall in results:
        mfu_text = f"{100 * mfu:.1f} %" if mfu else "n/a (GPU not in PEAK_FLOPS)"
        print(f"| {name} | {n} | {tok_s:,.0f} | {mfu_text} | {mem:.1f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
