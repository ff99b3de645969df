"""Contamination check: which items of the eval sets the evaluate stage scores occur in the model's training data.

Definition: lm-evaluation-harness's 13-gram overlap (`tasks.core.ngrams`: ASCII lower-cased, punctuation-deleted,
whitespace-split words; an item is contaminated when one of its 13-grams occurs in a training document; items under
13 words cannot be, and are counted as `short`). The eval sets: HellaSwag, ARC and LAMBADA (`tasks.core.benchmarks
.item_texts`: the question or context with each choice), CORE's tasks as one set `core` (`tasks.evaluate.core
.core_item_texts`: the items scored, each with its gold answer; ids `<task>/<line>`), every `evaluate.text_files`
document, and the sample (or chat) prompts. The held-out val split is not checked: the tokenize stage keeps it apart
from train by document, and 13-gram overlap between pages of one site (navigation, licence footers) would flag
nearly every document.

The training data is found by following the checkpoint's lineage through the sidecars (`training_data`): the train
split of the token set it was trained on (`data`), the checkpoint it continued from (`train.init_from`), the base it
was fine-tuned from (`base_checkpoint`) and the conversations or preference pairs of SFT and DPO (`sft_data`,
`preference_data`), recursively. The train split's documents are decoded from its token shards (byte-level BPE:
the decoded text is the curated text), so exactly what the model saw is scanned, and nothing of val. An imported
base's own pretraining data is not on disk: the check then says it is incomplete and names the base.

The result (`report.json` → `contamination`) gives per eval set the items checked, short and contaminated, the
contaminated ids with the first training document and n-gram that matched, and for every metric with per-item
results (`tasks.evaluate.items`) the score on the clean subset beside the full score. `<set>_contaminated` (the
fraction) and `<metric>_clean` also go into the report's metrics, so the registry's `max_contamination` and the
model card read them like any metric.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.core.artifacts import TokenSet, load_done
from tasks.core.benchmarks import item_texts
from tasks.core.ngrams import N, NGramIndex
from tasks.evaluate.config import EvalConfig
from tasks.evaluate.items import ItemScores, text_ids
from tasks.evaluate.metrics import read_text_docs, split_docs

EVIDENCE_SHOWN = 50  # contaminated items per set whose matching document and n-gram the report spells out
DEFINITION = (f"lm-evaluation-harness decontamination: word {N}-grams after Janitor.normalize_string (ASCII "
              "lower-cased, string.punctuation deleted, whitespace split); items under 13 words cannot match")


class TrainingData(BaseModel):
    """What a checkpoint was trained on, as far as its lineage on disk tells."""

    token_sets: list[str] = Field(default_factory=list, description="Tokenize stage dirs whose train split it saw.")
    conversations: list[str] = Field(default_factory=list, description="SFT/DPO train.jsonl files it saw.")
    unknown: list[str] = Field(default_factory=list, description="What it saw that is not on disk to check.")

    @property
    def complete(self) -> bool:
        return not self.unknown


def training_data(checkpoint_dir: Path) -> TrainingData:
    """Walk the sidecars from `checkpoint_dir` back to every data set the weights were trained on."""
    from models.weights.checkpoint import read_sidecar

    found = TrainingData()
    todo, seen = [Path(checkpoint_dir)], set()
    while todo:
        here = todo.pop()
        if here.resolve() in seen:
            continue
        seen.add(here.resolve())
        try:
            sidecar = read_sidecar(here)
        except FileNotFoundError:
            found.unknown.append(f"checkpoint {here} (no longer on disk)")
            continue
        data = sidecar.get("data", {}).get("path")
        if data and data not in found.token_sets:
            if (Path(data) / "manifest.json").is_file():
                found.token_sets.append(data)
            elif f"token set {data} (no longer on disk)" not in found.unknown:
                found.unknown.append(f"token set {data} (no longer on disk)")
        for key in ("sft_data", "preference_data"):
            path = sidecar.get(key, {}).get("path")
            if path:
                found.conversations.append(str(Path(path) / "train.jsonl"))
        parents = [sidecar.get("train", {}).get("init_from"), sidecar.get("base_checkpoint", {}).get("path")]
        todo += [Path(p) for p in parents if p]
        if "source" in sidecar and not any(parents):  # an imported base: its pretraining corpus is the vendor's
            source = sidecar["source"]
            found.unknown.append(f"pretraining data of imported {source.get('kind', '?')} "
                                 f"{source.get('name') or source.get('repo') or source.get('path', '')}".strip())
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key not in ("role", "source"):
                yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def training_docs(data: TrainingData) -> Iterator[tuple[str, str]]:
    """(doc id, text) of every training document: decoded train-split token documents, then conversation rows."""
    from models.text.tokenizer import Tokenizer
    from tasks.core.tokens import read_bin

    for path in data.token_sets:
        tokens = load_done(Path(path), TokenSet)
        tokenizer = Tokenizer.load(tokens.dir / tokens.tokenizer_file)
        for name in tokens.train_files:
            for n, doc in enumerate(split_docs(read_bin(tokens.dir / name), tokenizer.bos_id)):
                text = doc[1:] if len(doc) and doc[0] == tokenizer.bos_id else doc  # the separator is not text
                yield f"{tokens.dir.name}/{name}#{n}", tokenizer.decode(text.tolist())
    for path in data.conversations:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield f"{path}:{n}", "\n".join(_strings(json.loads(line)))


def eval_items(cfg: EvalConfig) -> dict[str, dict[str, list[str]]]:
    """Eval set → item id (`tasks.evaluate.items`' convention) → the item's texts, for each set the stage scores."""
    limit = cfg.max_downstream_examples
    sets: dict[str, dict[str, list[str]]] = {}
    for kind, path in (("hellaswag", cfg.hellaswag_file), ("arc", cfg.arc_file), ("lambada", cfg.lambada_file)):
        if path:
            sets[kind] = item_texts(kind, path, limit)
    for name in cfg.text_files:
        docs = read_text_docs(Path(name))
        sets[f"text/{Path(name).stem}"] = {i: [doc] for i, doc in zip(text_ids(docs), docs)}
    bundle, max_per_task = cfg.core_bundle, cfg.core_max_per_task
    if bundle:
        sets["core"] = core_items(bundle, max_per_task)
    if cfg.prompts:
        sets["prompts"] = {str(i): [prompt] for i, prompt in enumerate(cfg.prompts)}
    return sets


def core_items(bundle: Path | str, max_per_task: int) -> dict[str, list[str]]:
    """The CORE items scored (every task of the bundle in one set), by their `<task>/<line>` id."""
    from tasks.evaluate.core import core_item_texts

    return {item: [text] for task in core_item_texts(bundle, max_per_task).values() for item, text in task}


def set_of(metric: str) -> str:
    """The eval set behind an item metric: `hellaswag_acc_norm` -> `hellaswag`, `text/x_bpb` -> `text/x`."""
    return metric.rsplit("_", 1)[0] if metric.startswith("text/") else metric.split("_", 1)[0]


def check(
    cfg: EvalConfig, checkpoint_dir: Path, items: dict[str, ItemScores]
) -> tuple[dict[str, Any], dict[str, float]]:
    """(the `contamination` section of report.json, see the module docstring; the metrics it adds)."""
    t0 = time.time()
    sets = eval_items(cfg)
    index = NGramIndex(sets)
    data = training_data(checkpoint_dir)
    n_docs = 0

    def counted() -> Iterator[tuple[str, str]]:
        nonlocal n_docs
        for doc in training_docs(data):
            n_docs += 1
            yield doc

    overlaps = index.overlaps(counted())
    scan_seconds = time.time() - t0
    per_set: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for name, set_items in sets.items():
        dirty = sorted((key[1] for key in overlaps if key[0] == name), key=_id_order)
        per_set[name] = {
            "items": len(set_items), "short": len(index.short[name]), "contaminated": len(dirty),
            "fraction": len(dirty) / len(set_items) if set_items else 0.0, "contaminated_ids": dirty,
            "evidence": {i: {"doc": overlaps[(name, i)].doc, "ngram": overlaps[(name, i)].ngram}
                         for i in dirty[:EVIDENCE_SHOWN]},
            "scores": {},
        }
        metrics[f"{name}_contaminated"] = per_set[name]["fraction"]
    for metric, scores in items.items():
        name = set_of(metric)
        if name not in per_set:
            continue
        clean = scores.subset(set(scores.ids) - set(per_set[name]["contaminated_ids"]))
        per_set[name]["scores"][metric] = {"full": scores.aggregate(), "clean": clean.aggregate(),
                                           "clean_items": len(clean.ids)}
        metrics[f"{metric}_clean"] = clean.aggregate()
    return {
        "definition": DEFINITION, "ngram": N, "training_data": data.model_dump(), "complete": data.complete,
        "training_docs": n_docs, "index_hashes": len(index.hashes), "index_bytes": index.nbytes,
        "seconds": round(time.time() - t0, 3), "scan_seconds": round(scan_seconds, 3), "sets": per_set,
    }, metrics


def _id_order(item: str) -> tuple[int, str]:
    return (int(item), "") if item.isdigit() else (0, item)
