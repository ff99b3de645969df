"""Training benchmarks on the demo corpus (the Python 3.11 HTML docs installed on this machine).

1. CPU tokens/s of the `tiny_cpu` model, forward + backward + AdamW step, eager vs `torch.compile`.
2. Time to quality: our GPT (RoPE, RMSNorm, SwiGLU, Muon or AdamW) vs the nanoGPT-style GPT-2 baseline (learned
   positions, LayerNorm, GELU, AdamW) on the same token shards, about the same parameter count, the same CPU and the
   same wall-clock budget; prints val bits-per-byte against training seconds and the ratio of times to reach the
   baseline's final bpb (goal: <= 0.6).

    .venv/bin/python bench/train.py [--budget 120] [--skip-speed]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from models.architectures.registry import ModelConfig
from tasks.core.artifacts import lmforge_home
from tasks.train.train import TrainConfig

DOCS = Path("/usr/share/doc/python3.11/html")


def demo_tokens(vocab_size: int = 4096):
    """Extract the docs' main text with trafilatura, shard, tokenize; cached under $LMFORGE_HOME/bench."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import trafilatura

    from tasks.core.artifacts import ShardSet, TokenSet, load_done
    from tasks.core.schema import SHARD_SCHEMA
    from tasks.tokenize.tokenize import TokenizeConfig, run_tokenize

    root = lmforge_home() / "bench" / "train"
    done = load_done(root / f"tokens-{vocab_size}", TokenSet)
    if done:
        return done
    shard = root / "shards" / "shard_00000.parquet"
    if not shard.exists():
        pages = sorted(DOCS.rglob("*.html"))
        if not pages:
            raise SystemExit(f"no HTML under {DOCS}: apt-get install python3.11-doc (or run `make setup`)")
        kept = [(p, t) for p, t in ((p, trafilatura.extract(p.read_text(errors="replace"))) for p in pages)
                if t and len(t) > 200]
        pages, texts = [p for p, _ in kept], [t for _, t in kept]
        n = len(texts)
        cols = {name: [None] * n for name in SHARD_SCHEMA.names}
        cols.update(
            id=[str(i) for i in range(n)],
            text=texts,
            url=[str(p) for p in pages],
            domain=["docs"] * n,
            crawl_date=["2024-01-01T00:00:00Z"] * n,
            language=["en"] * n,
            language_score=[1.0] * n,
            minhash_cluster_size=[1] * n,
            token_count=[len(t.split()) for t in texts],
            source=["crawl"] * n,
        )
        shard.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pydict(cols, schema=SHARD_SCHEMA), shard)
    n_bytes = sum(len(t.encode()) for t in pq.read_table(shard, columns=["text"]).column("text").to_pylist())
    shards = ShardSet(path=str(shard.parent), files=[shard.name], n_docs=0, n_bytes=n_bytes)
    return run_tokenize(TokenizeConfig(vocab_size=vocab_size, workers=1), shards, root / f"tokens-{vocab_size}")


def tiny_model() -> ModelConfig:
    """The proposed `tiny_cpu` model: 4 x 128, 2 heads of 64, context 128 (about 1.4 M parameters with vocab 4096)."""
    return ModelConfig(n_layer=4, n_embd=128, n_head=2, n_kv_head=2, seq_len=128)


def speed(tokens, steps: int = 12) -> list[tuple[str, int, float]]:
    """(mode, threads, tokens/s) of forward + backward + AdamW on batches of 16 x seq_len."""
    import torch

    from models.architectures.registry import build_model
    from tasks.core.tokens import TokenLoader

    rows = []
    seq = tiny_model().seq_len
    for compiled in (False, True):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            model = build_model(tiny_model().model_copy(update={"vocab_size": tokens.vocab_size}))
            run = torch.compile(model) if compiled else model
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            loader = TokenLoader([tokens.dir / f for f in tokens.train_files], 16, seq)
            for i in range(steps + 3):  # 3 warm-up steps (compilation happens there)
                if i == 3:
                    t0 = time.time()
                x, y = loader.next_batch()
                _, loss = run(x, y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            rows.append(("compile" if compiled else "eager", threads, steps * 16 * seq / (time.time() - t0)))
    return rows


class Contender:
    """One model in the paired race: its own optimizer, loader and clock (seconds spent in its own steps)."""

    def __init__(self, name: str, cfg: TrainConfig, tokens):
        import torch

        from models.architectures.registry import build_model
        from models.optimisation.muon import OptimizerSpec, build_optimizers
        from tasks.core.tokens import TokenLoader

        torch.manual_seed(cfg.seed)
        self.name, self.cfg = name, cfg
        self.model = build_model(cfg.model.model_copy(update={"vocab_size": tokens.vocab_size}))
        spec = OptimizerSpec(cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.betas, cfg.muon_lr)
        self.optimizers = build_optimizers(self.model, spec)
        self.loader = TokenLoader([tokens.dir / f for f in tokens.train_files], cfg.batch_size, cfg.model.seq_len)
        self.step, self.seconds, self.points = 0, 0.0, []

    def train_step(self) -> None:
        import torch

        from tasks.train.train import lr_multiplier

        t0 = time.perf_counter()
        mult = lr_multiplier(self.cfg, self.step, self.seconds)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult
        x, y = self.loader.next_batch()
        _, loss = self.model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        for opt in self.optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        self.step += 1
        self.seconds += time.perf_counter() - t0

    def evaluate(self, tokens) -> float:
        import math

        from tasks.train.helpers import evaluate_loss

        files = [tokens.dir / f for f in tokens.val_files]
        loss = evaluate_loss(self.model, files, 16, self.cfg.model.seq_len, 16, "cpu", contextlib.nullcontext())
        bpb = loss / math.log(2) * tokens.n_val_tokens / tokens.val_bytes
        self.points.append((self.seconds, bpb))
        return bpb


def time_to_quality(tokens, budget: float, eval_every: float) -> None:
    """Race the contenders step by step, always advancing the one with the least training time, so load from other
    processes on a shared machine hits all of them alike; each stops when its own clock reaches `budget`."""
    import torch

    torch.set_num_threads(1)  # one thread: on a shared 2-core machine, two threads oversubscribe (~3x slower)
    base = {"max_steps": 10**6, "max_seconds": budget, "batch_size": 16, "warmup_steps": 20, "schedule": "cosine"}
    contenders = [
        Contender(
            "gpt2 baseline (AdamW 2e-3)",
            TrainConfig(model=tiny_model().model_copy(update={"arch": "gpt2"}), lr=2e-3, **base),
            tokens,
        ),
        Contender("ours (AdamW 3e-3)", TrainConfig(model=tiny_model(), lr=3e-3, **base), tokens),
        Contender(
            "ours (Muon 0.02 + AdamW 3e-3)", TrainConfig(model=tiny_model(), optimizer="muon", lr=3e-3, **base), tokens
        ),
    ]
    next_eval = {c.name: eval_every for c in contenders}
    while running := [c for c in contenders if c.seconds < budget]:
        c = min(running, key=lambda c: c.seconds)
        c.train_step()
        if c.seconds >= next_eval[c.name] or c.seconds >= budget:
            c.evaluate(tokens)
            next_eval[c.name] += eval_every
    baseline = contenders[0]
    target, base_time = baseline.points[-1][1], baseline.points[-1][0]
    print(
        f"\n## Time to quality (paired, {budget:.0f} s of training each, 1 thread; baseline final bpb {target:.3f})\n"
    )
    print("| run | params | steps | tokens/s | final val bpb | s to reach baseline bpb | time ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in contenders:
        reach = next((s for s, b in c.points if b <= target), None)
        ratio = f"{reach / base_time:.2f}" if reach is not None else "not reached"
        rate = c.step * c.cfg.batch_size * c.cfg.model.seq_len / c.seconds
        print(
            f"| {c.name} | {c.model.num_params():,} | {c.step} | {rate:,.0f} | {c.points[-1][1]:.3f} | "
            f"{'-' if reach is None else round(reach, 1)} | {ratio} |"
        )
    print("\nval bpb vs training seconds:")
    for c in contenders:
        print(f"- {c.name}: " + ", ".join(f"{s:.0f}s {b:.3f}" for s, b in c.points))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--budget", type=float, default=120.0, help="training seconds per run in the time-to-quality table"
    )
    parser.add_argument("--eval-every", type=float, default=15.0, help="val bpb every N training seconds")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    tokens = demo_tokens()
    print(
        f"demo corpus: {tokens.n_train_tokens:,} train / {tokens.n_val_tokens:,} val tokens, vocab {tokens.vocab_size}"
    )
    if not args.skip_speed:
        print("\n## CPU tokens/s, tiny_cpu model (4x128, seq 128, batch 16), fwd+bwd+AdamW\n")
        print("| mode | torch threads | tokens/s |\n| --- | ---: | ---: |")
        for mode, threads, rate in speed(tokens):
            print(f"| {mode} | {threads} | {rate:,.0f} |", flush=True)
    if not args.skip_quality:
        time_to_quality(tokens, args.budget, args.eval_every)


if __name__ == "__main__":
    main()
