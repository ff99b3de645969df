"""Evaluate stage: held-out loss, perplexity and bits per byte, downstream benchmarks, sample generations.

Bits per byte is what makes models with different tokenizers comparable: `bpb = total nats / (ln 2 · bytes)`,
where the nats are summed over every text token of the evaluated documents (document-separator `<|bos|>` targets
are not text, so they are not scored) and the bytes are the UTF-8 bytes of those documents. The held-out split
comes from the tokenize stage's val shards; users can name more text/JSONL/Parquet files (`text_files`). The
stage writes `report.json` (metrics, samples and an `eval_sets` fingerprint per metric group, which the promotion
gate uses to compare models only on the same data, each folding in the group's `pins`: file hashes, scorer and
baseline versions, `tasks.evaluate.pins`), `report.md`, and `items.json`: each val / text-file document's bits and
bytes (the model's per-position loss summed over the document's tokens, so they add up to the totals) and each
benchmark item's outcome, which the gate's paired bootstrap resamples (`tasks.evaluate.items`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import task

from tasks.core.artifacts import CheckpointRef, EvalReport, TokenSet, finish_stage, load_done, reset_dir, stage_dir
from tasks.core import benchmarks
from tasks.evaluate import downstream, safety
from tasks.evaluate.config import VAL_DOCS, EvalConfig
from tasks.evaluate.core import BASELINE_FILES, bundle_fingerprint, evaluate_core
from tasks.evaluate.items import ITEMS_FILE, ItemScores, save_items
from tasks.evaluate.metrics import context_length, heldout_metrics, read_text_docs, text_file_metrics, texts_fingerprint
from tasks.evaluate.pins import EvalPins
from tasks.evaluate.samples import sample_generations


def val_docs_bytes(texts: list[str]) -> bytes:
    """`val_docs.jsonl` as written beside the report: one {"text"} row per scored val document."""
    return "".join(json.dumps({"text": text}) + "\n" for text in texts).encode("utf-8")


def evaluate_model(model: Any, tokenizer: Any, cfg: EvalConfig, tokens: TokenSet | None, device: str = "cpu") -> dict[str, Any]:
    """Every configured evaluation of a loaded model: {"metrics", "eval_sets", "pins", "items", "samples", …}."""
    seq_len = cfg.seq_len or context_length(model)
    metrics: dict[str, float] = {}
    eval_sets: dict[str, str] = {}
    pins = EvalPins.current()
    items: dict[str, ItemScores] = {}  # the per-document / per-item results behind the metrics (items.py)
    stats: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    t0 = time.time()
    if tokens is not None:
        val, eval_sets["val"], stats["val"], val_texts, items["val_bpb"] = heldout_metrics(
            model, tokenizer, tokens, cfg, seq_len, device)
        metrics.update(val)
        pins.add_bytes("val", VAL_DOCS, val_docs_bytes(val_texts))
    for name in cfg.text_files:
        found, eval_sets[f"text/{Path(name).stem}"], doc_bits = text_file_metrics(
            model, tokenizer, Path(name), seq_len, cfg, device)
        metrics.update(found)
        pins.add_file(f"text/{Path(name).stem}", name)
        items[doc_bits.metric] = doc_bits
    stats["heldout_seconds"] = time.time() - t0
    limit = cfg.max_downstream_examples
    downstream_sets = [
        ("hellaswag", cfg.hellaswag_file, benchmarks.load_hellaswag, downstream.multiple_choice_outcomes,
         downstream.summarise_multiple_choice),
        ("arc", cfg.arc_file, benchmarks.load_arc, downstream.multiple_choice_outcomes,
         downstream.summarise_multiple_choice),
        ("lambada", cfg.lambada_file, benchmarks.load_lambada, downstream.lambada_outcomes,
         downstream.summarise_lambada),
    ]
    for name, path, load, score, summarise in downstream_sets:
        if path:
            t0 = time.time()
            loaded = load(path, limit)
            outcomes = score(model, tokenizer, loaded, seq_len, device, cfg.batch_size)
            metrics.update({f"{name}_{key}": value for key, value in summarise(loaded, outcomes).items()})
            ids = [str(i) for i in range(len(loaded))]  # an item's id is its position in the file (items.py)
            for key in ("acc", "acc_norm"):
                if key in outcomes:
                    items[f"{name}_{key}"] = ItemScores(metric=f"{name}_{key}", kind="mean", ids=ids,
                                                        values=outcomes[key])
            eval_sets[name] = downstream.file_fingerprint(path, limit)
            pins.add_file(name, path)
            stats[f"{name}_seconds"] = time.time() - t0
    if cfg.core_bundle:
        t0 = time.time()
        core = evaluate_core(model, tokenizer, cfg.core_bundle, cfg.core_max_per_task, cfg.core_baseline, seq_len,
                             device, cfg.batch_size)
        metrics.update(core.metrics())
        items.update(core.items())
        eval_sets["core"] = bundle_fingerprint(core.bundle, cfg.core_max_per_task)
        for path in [core.bundle.root / "core.yaml", core.bundle.root / BASELINE_FILES[core.bundle.baseline_version],
                     *sorted({core.bundle.data_path(task) for task in core.bundle.tasks})]:
            pins.add_file("core", path, name=path.relative_to(core.bundle.root).as_posix())
        pins.set_baseline("core", core.bundle.baseline_version)
        extra["core"] = core.summary()
        stats["core_seconds"] = time.time() - t0
    t0 = time.time()
    found, sets, safety_details = safety.run_probes(model, tokenizer, cfg, seq_len, device)
    metrics.update(found)
    eval_sets.update(sets)
    if cfg.crows_pairs_file:
        pins.add_file("crows", cfg.crows_pairs_file)
    stats["safety_seconds"] = time.time() - t0
    t0 = time.time()
    samples = sample_generations(model, tokenizer, cfg, device) if cfg.prompts else []
    stats["samples_seconds"] = time.time() - t0
    result = {"metrics": metrics, "eval_sets": pins.fold_all(eval_sets), "pins": pins.model_dump(), "items": items,
              "samples": samples, "stats": stats, "safety": safety_details, **extra}
    return result | ({"val_texts": val_texts} if tokens is not None else {})


def core_line(core: dict[str, Any]) -> str:
    """CORE in one line: the figure, over how many tasks, the baseline version, what was missing."""
    missing = f"; missing: {', '.join(core['missing'])}" if core["missing"] else ""
    return (f"CORE {core['metric']} = {core['value']:.4f} (centered with DCLM {core['baseline']} random baselines, "
            f"{core['max_per_task']} items per task{missing})")


def report_markdown(result: dict[str, Any], ckpt: CheckpointRef) -> str:
    lines = [f"# Evaluation of checkpoint step {ckpt.step} ({ckpt.n_params:,} parameters)", "", "| metric | value |",
             "| --- | --- |"]
    lines += [f"| {key} | {value:.4f} |" for key, value in sorted(result["metrics"].items())]
    lines += ["", "## Pinned evaluation", "", *EvalPins.model_validate(result["pins"]).markdown()]
    if "core" in result:
        lines += ["", core_line(result["core"])]
    lines += ["", "## Samples", ""] + [f"- `{sample!r}`" for sample in result["samples"]]
    return "\n".join(lines) + "\n"


def run_evaluate(cfg: EvalConfig, ckpt: CheckpointRef, tokens: TokenSet, out: Path) -> EvalReport:
    from models.weights.checkpoint import load_model

    t0 = time.time()
    if any(out.iterdir()):  # leftovers of a killed run: evaluation is cheap to redo
        reset_dir(out)
    from models.hardware.devices import resolve_device

    device = str(resolve_device(cfg.device))
    model, tokenizer, _ = load_model(ckpt.dir / ckpt.checkpoint, device=device)
    model.eval()
    result = evaluate_model(model, tokenizer, cfg, tokens, device)
    if cfg.contamination:
        from tasks.evaluate import contamination

        result["contamination"], clean = contamination.check(cfg, ckpt.dir / ckpt.checkpoint, result["items"])
        result["metrics"].update(clean)
    result["checkpoint"] = {"path": str(ckpt.dir / ckpt.checkpoint), "step": ckpt.step, "manifest": ckpt.manifest_sha256}
    result["tokenizer_sha256"] = tokenizer.sha256
    # the scored val documents as text: the eval set itself, so a model with another tokenizer can be scored on it
    (out / VAL_DOCS).write_bytes(val_docs_bytes(result.pop("val_texts")))  # the bytes its pin hashed
    save_items(out, result.pop("items"))
    (out / "report.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    (out / "report.md").write_text(report_markdown(result, ckpt))
    ref = EvalReport(path=str(out), metrics=result["metrics"], samples=result["samples"])
    stats = {**result["stats"], **{k: v for k, v in result["metrics"].items() if "/" not in k}}
    files = ["report.json", "report.md", VAL_DOCS, ITEMS_FILE]
    return finish_stage(out, ref, config=cfg, entry=run_evaluate, stats=stats, files=files, started=t0)


def rescore(
    checkpoint_dir: Path, report: EvalReport, device: str = "cpu"
) -> tuple[dict[str, float], dict[str, str], dict[str, ItemScores]]:
    """Metrics, eval-set fingerprints and per-item results of another checkpoint on exactly the eval sets of
    `report`.

    The promotion gate uses it when the champion was scored on other data. The val set is re-read as text
    (`val_docs.jsonl`), so a champion with a different tokenizer is scored fairly: bits per byte over the same bytes.
    """
    from models.weights.checkpoint import load_model

    saved = json.loads((report.dir / "report.json").read_text())
    cfg = EvalConfig.model_validate({**report.manifest()["config"], "prompts": []})
    model, tokenizer, _ = load_model(checkpoint_dir, device=device)
    result = evaluate_model(model, tokenizer, cfg, None, device)
    metrics, eval_sets, items = result["metrics"], result["eval_sets"], result["items"]
    if (report.dir / VAL_DOCS).is_file() and "val" in saved.get("eval_sets", {}):
        found, _, items["val_bpb"] = text_file_metrics(
            model, tokenizer, report.dir / VAL_DOCS, cfg.seq_len or context_length(model), cfg, device, prefix="val",
            n_bytes=int(report.metrics.get("val_bytes", 0)) or None)
        metrics.update(found)
        # the same documents under this code's pins: equal to the report's own fingerprint only if the pins agree
        pins = EvalPins.model_validate(result["pins"])
        pins.add_file("val", report.dir / VAL_DOCS, VAL_DOCS)
        eval_sets["val"] = pins.fold("val", texts_fingerprint(read_text_docs(report.dir / VAL_DOCS)))
    return metrics, eval_sets, items


@task(name="evaluate", retries=1)
def evaluate(cfg: EvalConfig, ckpt: CheckpointRef, tokens: TokenSet) -> EvalReport:
    out = stage_dir("evaluate", cfg, ckpt, tokens, entry=run_evaluate)
    return load_done(out, EvalReport) or run_evaluate(cfg, ckpt, tokens, out)
