"""SFT benchmark: how much chat data the demo corpus yields, how well it packs, how fast SFT runs, what it learns.

Extracts the Python documentation installed on this machine (the demo corpus) with the crawler's extractor, derives
conversations (`tasks.finetune.sft_data`), trains a tokenizer on the pages, packs the conversations at the tiny preset's
context, and fine-tunes a freshly initialised tiny-preset model for a few steps, reporting the assistant-token val
loss before and after. Usage: `.venv/bin/python bench/sft.py [--pages 200] [--steps 30] [--threads 1]`.
"""

from __future__ import annotations

import argparse
import glob
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.artifacts import ShardSet

DEMO = "/usr/share/doc/python3.11/html"


def demo_shards(root: Path, pages: int) -> tuple[ShardSet, list[str]]:
    from tasks.collect.extract import extract_page

    texts = []
    for path in sorted(glob.glob(f"{DEMO}/library/*.html"))[:pages]:
        page = extract_page(Path(path).read_bytes(), f"http://127.0.0.1/{Path(path).name}")
        if page.text:
            texts.append(page.text)
    root.mkdir(parents=True)
    table = pa.table({"id": [f"doc-{i}" for i in range(len(texts))], "text": texts, "language": ["en"] * len(texts)})
    pq.write_table(table, root / "shard_00000.parquet")
    return ShardSet(path=str(root), files=["shard_00000.parquet"], n_docs=len(texts), n_bytes=0), texts


def main() -> None:
    import torch

    from models.architectures.registry import ModelConfig, build_model
    from models.text.tokenizer import Tokenizer
    from models.weights.checkpoint import save_checkpoint
    from tasks.finetune.sft import SFTConfig, checkpoint_from_dir, run_sft
    from tasks.finetune.sft_data import SFTDataConfig, run_sft_data

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not Path(DEMO).is_dir():
        raise SystemExit(f"{DEMO} is missing: install the demo corpus (infra/apt_install.sh)")
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        shards, texts = demo_shards(tmp / "shards", args.pages)
        rows.append(("pages extracted", f"{len(texts)} in {time.time() - t0:.1f} s"))
        t0 = time.time()
        (tmp / "data").mkdir()
        data = run_sft_data(SFTDataConfig(), shards, tmp / "data")
        stats = data.manifest()["stats"]
        rows += [("conversations derived (kept)", str(stats["sources"]["corpus"]["kept"])),
                 ("conversations seed (kept)", str(stats["sources"]["seed"]["kept"])),
                 ("train / val", f"{data.n_train} / {data.n_val}"),
                 ("sft-data seconds", f"{time.time() - t0:.1f}")]
        tokenizer = Tokenizer.train(texts, vocab_size=4096)
        tok_file = tokenizer.save(tmp / "tokenizer.json")
        cfg = ModelConfig(vocab_size=tokenizer.vocab_size)  # the tiny_cpu preset's model
        torch.manual_seed(0)
        model = build_model(cfg)
        sidecar = {"model": cfg.model_dump(), "tokenizer": {"sha256": tokenizer.sha256}, "n_params": model.num_params()}
        base = checkpoint_from_dir(save_checkpoint(tmp / "base", 0, model, {"step": 0}, sidecar, tok_file))
        ref = run_sft(SFTConfig(max_steps=args.steps, threads=args.threads, device="cpu"), base, data, tmp / "sft")
        s = ref.manifest()["stats"]
        rows += [("packed rows (seq_len 256)", str(s["rows"])),
                 ("packing efficiency", f"{s['packing_efficiency']:.1%}"),
                 ("assistant share of tokens", f"{s['assistant_tokens'] / s['tokens']:.1%}"),
                 ("truncated conversations", str(s["truncated"])),
                 (f"SFT {args.steps} steps, CPU x{args.threads} threads",
                  f"{s['train_seconds']:.1f} s, {s['tokens_per_s']:,.0f} tok/s"),
                 ("val loss (assistant tokens) before → after",
                  f"{s.get('val_loss_before', float('nan')):.3f} → {s.get('val_loss', float('nan')):.3f}")]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


if __name__ == "__main__":
    main()
