"""lmforge's trainer against nanochat's on the same CPU, the same token shards and the same training-time budget.

nanochat's `GPT` and `MuonAdamW` (karpathy/nanochat @ 92d63d4, MIT) are imported from `../shared/anchors/nanochat/`;
its schedules are `scripts/base_train.py`'s (40-step warmup, constant, linear warmdown over the last 65 % to 5 %;
Muon momentum 0.85 -> 0.97 over 400 steps, then down to 0.90 in the warmdown; weight decay 0.28 cosine-decayed to 0)
with the run's progress taken as training seconds / budget instead of steps / iterations, and its default learning
rates (embedding 0.3, unembedding 0.008, matrices 0.02, scalars 0.5; its width scaling (d/768)^-0.5 of the AdamW
ones applies; its batch-size and horizon rescaling, tuned around 0.5 M-token batches at d12, does not). Its shape
follows the preset's (layers, width, heads, kv heads, context, batch) with full-context attention (`window_pattern
"L"`). lmforge runs its real trainer (`run_train`) with the preset's train section plus each variant's overrides.

Every contender is its own process with one torch thread, all started together, so the machine's load (a shared
2-core box) hits them alike; each stops when its own training clock (evaluation excluded) reaches the budget. The
clock is, by default, the process's CPU time (`--clock cpu`: one thread's CPU seconds are what it would get from a
core of its own, so other jobs on a shared machine do not eat into the budget); `--clock wall` is elapsed time, as
the trainer itself measures it. Both
are scored by the same function on the whole val split: mean cross-entropy over every val token
(`tasks.train.helpers.evaluate_loss`, batches of the training batch size) as bits per byte of the val text.

Data: the tokens of `bench/train.py`'s `demo_tokens` (Debian's python3.11-doc HTML pages through trafilatura, one
4096-token BPE; cached under $LMFORGE_HOME/bench), i.e. demo-like shards without running the crawl.

Prints each run's curve (val bpb against training seconds and against tokens), its tokens/s, and the time-to-quality
ratio: at the quality both reach (the worse of the two final bpbs), lmforge's training seconds over nanochat's, from
the curves interpolated linearly (<= 1.0: lmforge is at least as fast to that quality).

Measured 2026-12-06 on the 2-core dev box (CPU clock, 240 s each, 6 evaluations). Ablation, each change alone on
the preset as it stood before (`base`: Muon, untied, QK-norm, wsd, momentum ramp, cautious decay), ten runs
concurrent (`--variant 'NAME:key=value;...'`):

| run | steps | tokens/s | val bpb at 120 s | at 240 s | time / nanochat's |
| --- | ---: | ---: | ---: | ---: | ---: |
| base | 337 | 2,868 | 2.869 | 2.444 | 1.36 |
| embed_weight_decay=0.001 (was 0.1) | 335 | 2,854 | 2.745 | 2.235 | 1.00 |
| muon_variant=normuon | 332 | 2,827 | 2.861 | 2.437 | 1.35 |
| model.mlp_init_scale=0.4 | 337 | 2,872 | 2.835 | 2.439 | 1.35 |
| model.value_embeds (not exportable) | 333 | 2,840 | 2.863 | 2.403 | 1.30 |
| model.residual_scalars, scalar_lr=0.5 (not exportable) | 334 | 2,850 | 2.900 | 2.403 | 1.30 |
| model.rope_theta=100000 | 336 | 2,862 | 2.863 | 2.448 | 1.37 |
| grad_clip=0 | 334 | 2,844 | 2.856 | 2.385 | 1.28 |
| all of the above | 326 | 2,778 | 2.748 | 2.225 | 0.98 |
| nanochat | 272 | 2,314 | 2.679 | 2.233 | - |

Combinations, four runs concurrent:

| run | steps | tokens/s | val bpb at 120 s | at 240 s | time / nanochat's |
| --- | ---: | ---: | ---: | ---: | ---: |
| decay 0.001 + no clip + NorMuon + MLP init 0.4 | 340 | 2,899 | 2.731 | 2.195 | 0.95 |
| decay 0.001 + no clip | 341 | 2,904 | 2.746 | 2.229 | 1.01 |
| the recipe + value embeddings + residual scalars | 329 | 2,807 | 2.752 | 2.213 | 0.98 |
| nanochat | 279 | 2,379 | 2.689 | 2.224 | - |

Then, the recipe against two more changes and nanochat, four runs concurrent (the recipe's bpb repeats to 0.001
across batches: one seed, deterministic CPU kernels):

| run | steps | tokens/s | val bpb at 120 s | at 240 s | time / nanochat's |
| --- | ---: | ---: | ---: | ---: | ---: |
| the recipe above | 370 | 3,151 | 2.597 | 2.180 | 1.02 |
| + weight_decay=0.2 (Muon matrices) | 367 | 3,126 | 2.592 | 2.177 | 1.01 |
| + betas=[0.8, 0.95] (nanochat's AdamW beta1; the presets' recipe now) | 370 | 3,153 | 2.530 | 2.141 | 0.93 |
| nanochat | 312 | 2,657 | 2.717 | 2.169 | - |

nanochat is ahead for the first ~80 s (60 s: 3.15 against 3.38) and lmforge from then on (120 s: 2.53 against 2.72).
nanochat's own runs differ by up to ~0.06 bpb from batch to batch (2.169-2.233; its data order and kernels are not
fixed by one seed the way lmforge's are), so the ratio's last digit is noise.

    .venv/bin/python bench/trainer_vs_nanochat.py [--budget 240] [--preset tiny_cpu]
        [--variant 'adamw:optimizer=adamw' --variant 'muon:optimizer=muon;muon_lr=0.02'] [--no-nanochat]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NANOCHAT = Path(os.environ.get("NANOCHAT_DIR", ROOT.parent / "shared" / "anchors" / "nanochat"))  # ../shared/...
sys.path.insert(0, str(ROOT))  # run as a script: bench/ is on the path, the project root is not


def preset_train(preset: str, overrides: list[str]):
    """The preset's TrainConfig with `key=value` overrides (keys relative to `train`, values parsed as YAML)."""
    from flows.presets import load_config

    cfg = load_config(preset, None, [f"train.{o}" for o in overrides])
    model = cfg.train.model.model_copy(update={"vocab_size": cfg.tokenize.vocab_size})
    return cfg.train.model_copy(update={"model": model})


def tokens_for(preset: str):
    from flows.presets import load_config
    from train import demo_tokens  # bench/train.py

    return demo_tokens(load_config(preset).tokenize.vocab_size)


# ---------------------------------------------------------------- workers (one process per contender)


def run_lmforge(
    preset: str, overrides: list[str], budget: float, eval_points: int, out: Path, steps: int = 0, device: str = "cpu"
) -> dict:
    """lmforge's real trainer at the preset with overrides; its log.jsonl gives the curve. `steps` > 0: a run of
    that many steps (schedule by steps, one evaluation at the end) instead of a time budget."""
    from tasks.train.train import TrainConfig, run_train

    tokens = tokens_for(preset)
    train = preset_train(preset, overrides)
    # run_train evaluates every N steps: N for about `eval_points` evaluations at a rough rate (tiny_cpu on one
    # thread: ~1.5 steps per second; gpt_124m on an H100: ~10)
    steps_guess = int(budget * (1.5 if device == "cpu" else 10))
    cfg = TrainConfig.model_validate(
        {
            **train.model_dump(),
            "max_steps": steps or 10**7,
            "max_seconds": None if steps else budget,
            "eval_every": 0 if steps else max(steps_guess // eval_points, 1),
            "eval_batches": 10**6,  # the whole val split
            "checkpoint_every": 0,
            "progress": False,
            "threads": 1 if device == "cpu" else 0,
            "device": device,
        }
    )
    run_dir = out.parent / (out.stem + "-run")
    ref = run_train(cfg, tokens, run_dir)
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    tokens_per_step = cfg.batch_size * (cfg.seq_len or cfg.model.seq_len)
    points = [(r["train/seconds"], r["step"] * tokens_per_step, r["val/bpb"]) for r in rows if "val/bpb" in r]
    return {"points": points, "tokens_per_s": ref.tokens_seen / max(ref.train_seconds, 1e-9), "steps": ref.step}


def nanochat_lr_multiplier(step: int, progress: float) -> float:
    """base_train.get_lr_multiplier with progress = time / budget in place of it / num_iterations."""
    warmup, warmdown, final = 40, 0.65, 0.05
    if step < warmup:
        return (step + 1) / warmup
    if progress <= 1 - warmdown:
        return 1.0
    left = max(1.0 - progress, 0.0) / warmdown
    return left + (1 - left) * final


def nanochat_momentum(step: int, progress: float) -> float:
    """base_train.get_muon_momentum, the warmdown by time."""
    warmdown_start = 1 - 0.65
    if step < 400:
        return 0.85 + (step / 400) * (0.97 - 0.85)
    if progress >= warmdown_start:
        p = min((progress - warmdown_start) / 0.65, 1.0)
        return 0.97 * (1 - p) + 0.90 * p
    return 0.97


def build_nanochat(train, vocab_size: int, device: str = "cpu"):
    import torch

    from nanochat.gpt import GPT, GPTConfig

    m = train.model
    config = GPTConfig(
        sequence_len=m.seq_len, vocab_size=vocab_size, n_layer=m.n_layer, n_head=m.n_head, n_kv_head=m.n_kv_head,
        n_embd=m.n_embd, window_pattern="L",
    )
    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device=device)
    model.init_weights()
    optimizer = model.setup_optimizer(unembedding_lr=0.008, embedding_lr=0.3, matrix_lr=0.02, weight_decay=0.28,
                                      scalar_lr=0.5)
    return model, optimizer


class NanochatScored:
    """nanochat's forward(x, y) returns the loss alone; lmforge's evaluation expects (logits, loss)."""

    def __new__(cls, model):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x, y):
                return None, self.inner(x.contiguous(), y.contiguous())

        return Wrapped(model)


def run_nanochat(
    preset: str, budget: float, eval_points: int, out: Path, steps: int = 0, device: str = "cpu"
) -> dict:
    import contextlib

    import torch

    sys.path.insert(0, str(NANOCHAT))
    from tasks.core.bpb import bits_per_byte
    from tasks.core.tokens import TokenLoader
    from tasks.train.helpers import evaluate_loss

    if device == "cpu":
        torch.set_num_threads(1)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    tokens = tokens_for(preset)
    train = preset_train(preset, [])
    B, T = train.batch_size, train.model.seq_len
    # compile nanochat's fused optimizer kernels on a throwaway copy first, so compilation is not training time
    torch.manual_seed(0)
    warm, warm_opt = build_nanochat(train, tokens.vocab_size, device)
    ids = torch.randint(0, tokens.vocab_size, (2, B, T), device=device)
    warm(ids[0], ids[1]).backward()
    warm_opt.step()
    del warm, warm_opt
    torch.manual_seed(train.seed)
    model, optimizer = build_nanochat(train, tokens.vocab_size, device)
    scored = NanochatScored(model)
    loader = TokenLoader([tokens.dir / f for f in tokens.train_files], B, T)
    val_files = [tokens.dir / f for f in tokens.val_files]

    def evaluate() -> float:
        loss = evaluate_loss(scored, val_files, B, T, 10**6, device, contextlib.nullcontext())
        return bits_per_byte(loss * tokens.n_val_tokens, tokens.val_bytes)  # as run_train's val/bpb

    step, seconds, points, next_eval = 0, 0.0, [], budget / eval_points
    while (step < steps) if steps else (seconds < budget):
        t0 = time.perf_counter()
        progress = step / steps if steps else seconds / budget
        lrm, momentum = nanochat_lr_multiplier(step, progress), nanochat_momentum(step, progress)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lrm
            if group["kind"] == "muon":
                group["momentum"] = momentum
                group["weight_decay"] = 0.28 * 0.5 * (1 + math.cos(math.pi * progress))
        x, y = loader.next_batch()
        model(x.to(device), y.to(device)).backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
        step += 1
        sync()  # the clock covers the GPU's work, not its queueing
        seconds += time.perf_counter() - t0
        if (step == steps) if steps else (seconds >= next_eval or seconds >= budget):
            points.append((seconds, step * B * T, evaluate()))
            next_eval += budget / eval_points
    return {"points": points, "tokens_per_s": step * B * T / seconds, "steps": step}


# ---------------------------------------------------------------- the comparison


def time_to(points: list, target: float) -> float | None:
    """Training seconds at which the curve first reaches bpb <= target, interpolated between eval points."""
    prev = (0.0, float("inf"))
    for s, _, b in points:
        if b <= target:
            if not math.isfinite(prev[1]):
                return s
            return prev[0] + (s - prev[0]) * (prev[1] - target) / (prev[1] - b)
        prev = (s, b)
    return None


def bpb_at(points: list, seconds: float) -> float | None:
    """The curve's bpb at `seconds` (the last eval point at or before it; a step's overshoot of 2 % still counts)."""
    before = [b for s, _, b in points if s <= seconds * 1.02]
    return before[-1] if before else None


def report(results: dict[str, dict], budget: float, clock: str) -> None:
    print(f"\n## Side by side: {budget:.0f} s of training each ({clock} clock), one thread per run, all runs "
          "concurrent\n")
    print("| run | steps | tokens/s | final val bpb |")
    print("| --- | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['steps']} | {r['tokens_per_s']:,.0f} | {r['points'][-1][2]:.3f} |")
    marks = [budget * f for f in (0.125, 0.25, 0.5, 0.75, 1.0)]
    print("\nval bpb at training seconds:\n")
    print("| run | " + " | ".join(f"{m:.0f} s" for m in marks) + " |")
    print("| --- |" + " ---: |" * len(marks))
    for name, r in results.items():
        cells = [bpb_at(r["points"], m) for m in marks]
        print(f"| {name} | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")
    print("\ncurves (training s, tokens, val bpb):")
    for name, r in results.items():
        print(f"- {name}: " + ", ".join(f"{s:.0f}s/{t / 1e6:.2f}M {b:.3f}" for s, t, b in r["points"]))
    if "nanochat" not in results:
        return
    nano = results["nanochat"]
    print("\n### Time to quality (lmforge seconds / nanochat seconds at the bpb both reach; <= 1.0 is the target)\n")
    print("| run | quality (bpb) | lmforge s | nanochat s | ratio | nanochat passes lmforge's final at |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        if name == "nanochat":
            continue
        target = max(r["points"][-1][2], nano["points"][-1][2])
        ours, theirs = time_to(r["points"], target), time_to(nano["points"], target)
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "n/a"
        passes = time_to(nano["points"], r["points"][-1][2])
        print(f"| {name} | {target:.3f} | {ours or float('nan'):.0f} | {theirs or float('nan'):.0f} | {ratio} | "
              f"{'not within budget' if passes is None else f'{passes:.0f} s'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=240.0, help="training seconds per run")
    parser.add_argument("--preset", default="tiny_cpu")
    parser.add_argument("--eval-points", type=int, default=8, help="val evaluations per run (about)")
    parser.add_argument("--variant", action="append", default=[],
                        help="lmforge run 'NAME:key=value;key=value' (keys under train.); default: the preset as is")
    parser.add_argument("--no-nanochat", action="store_true", help="screen lmforge variants against each other")
    parser.add_argument("--steps", type=int, default=0,
                        help="screening: every run trains this many steps (schedules by steps, one evaluation at the "
                        "end) instead of --budget seconds, so its bpb does not depend on the machine's load")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="training seconds: this process's CPU time (default; immune to a shared machine's load) "
                        "or elapsed time")
    parser.add_argument("--device", default="cpu",
                        help="cpu, or cuda: the runs then take turns on the GPU (one at a time) with --clock wall")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one contender, in its own process
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        if args.clock == "cpu":  # every clock of this process (the trainer's and ours) reads its CPU time
            time.perf_counter = time.process_time
        if args.worker == "nanochat":
            result = run_nanochat(args.preset, args.budget, args.eval_points, args.out, args.steps, args.device)
        else:
            overrides = [o for o in args.variant[0].split(":", 1)[1].split(";") if o] if args.variant else []
            result = run_lmforge(
                args.preset, overrides, args.budget, args.eval_points, args.out, args.steps, args.device
            )
        args.out.write_text(json.dumps(result))
        return
    if not args.no_nanochat and not (NANOCHAT / "nanochat" / "gpt.py").exists():
        raise SystemExit(f"nanochat's source is not at {NANOCHAT} (../shared/anchors/nanochat): use --no-nanochat")
    tokens = tokens_for(args.preset)  # built once here, before the clocks start
    print(f"data: {tokens.path}: {tokens.n_train_tokens:,} train / {tokens.n_val_tokens:,} val tokens "
          f"({tokens.val_bytes:,} val bytes), vocab {tokens.vocab_size}")
    variants = args.variant or [f"lmforge {args.preset}:"]
    runs = {v.split(":", 1)[0]: ["--variant", v] for v in variants}
    if not args.no_nanochat:
        runs["nanochat"] = []
    if args.device != "cpu" and args.clock == "cpu":
        raise SystemExit("--device cuda needs --clock wall (a process's CPU time does not count GPU work)")
    tmp = Path(tempfile.mkdtemp(prefix="lmforge-vs-nanochat-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    procs = {}
    for i, (name, extra) in enumerate(runs.items()):
        out = tmp / f"run{i}.json"
        cmd = [sys.executable, __file__, "--worker", "nanochat" if name == "nanochat" else "lmforge",
               "--preset", args.preset, "--budget", str(args.budget), "--eval-points", str(args.eval_points),
               "--steps", str(args.steps), "--clock", args.clock, "--device", args.device,
               "--out", str(out), *extra]
        err = open(tmp / f"run{i}.err", "w")  # noqa: SIM115 - the child writes it until it exits
        procs[name] = (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err), out)
        if args.device != "cpu":  # one GPU: the runs take turns
            procs[name][0].wait()
    results = {}
    for name, (proc, out) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{name} failed (exit {proc.returncode}); see {out.with_suffix('.err')}")
        results[name] = json.loads(out.read_text())
    if args.steps:
        print(f"\n## Screening: {args.steps} steps each, one thread per run, all runs concurrent\n")
        print("| run | val bpb at the end | tokens/s | training s |\n| --- | ---: | ---: | ---: |")
        for name, r in results.items():
            s, _, b = r["points"][-1]
            print(f"| {name} | {b:.3f} | {r['tokens_per_s']:,.0f} | {s:.0f} |")
    else:
        report(results, args.budget, args.clock)
    (tmp / "results.json").write_text(json.dumps(results))
    print(f"\nraw results: {tmp / 'results.json'}")


if __name__ == "__main__":
    main()
