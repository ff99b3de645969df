"""Per-item evaluation results: what each scored document or benchmark item contributed to a metric.

A metric in `report.json` is an aggregate; the promotion gate's paired bootstrap, the contamination check's
clean-subset scores and CORE's per-task breakdown need the items behind it. The evaluate stage writes them to
`items.json` beside the report, one `ItemScores` per metric, keyed by a stable item id:

- `kind="ratio"` (bits per byte): `values[i]` are item i's bits and `weights[i]` its UTF-8 bytes; the metric is
  Σvalues / Σweights over the items.
- `kind="mean"` (accuracies): `values[i]` is 0/1 (or a per-item score), `weights` is empty; the metric is the mean.
- `kind="centered"` (CORE): `values[i]` is 0/1 and `groups[i]` the item's task; `baselines[task]` is the task's
  random baseline (in [0, 1)). The metric is the mean over tasks of (accuracy - baseline) / (1 - baseline).

Ids identify the same item across models, whatever their tokenizer:
- a scored document (val split, `evaluate.text_files`): `text_ids` (sha256 of its text, `#n` for the n-th repeat);
- a benchmark item (HellaSwag, ARC, LAMBADA): its 0-based position in the file, as a string (`"17"`);
- a CORE item: `"<task label>/<0-based line number in the task's jsonl file>"` (`"arc_easy/17"`);
- a sample or chat prompt: its 0-based position in the configured prompt list.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ITEMS_FILE = "items.json"


class ItemScores(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = Field(description="The report metric these items aggregate to, e.g. val_bpb, hellaswag_acc_norm.")
    kind: Literal["ratio", "mean", "centered"]
    ids: list[str]
    values: list[float]
    weights: list[float] = Field(default_factory=list, description="ratio: each item's denominator (bytes).")
    groups: list[str] = Field(default_factory=list, description="centered: each item's task.")
    baselines: dict[str, float] = Field(default_factory=dict, description="centered: each task's random baseline.")

    @model_validator(mode="after")
    def _aligned(self) -> ItemScores:
        n = len(self.ids)
        if len(self.values) != n:
            raise ValueError(f"{self.metric}: {len(self.values)} values for {n} ids")
        if self.kind == "ratio" and len(self.weights) != n:
            raise ValueError(f"{self.metric}: a ratio metric needs one weight per item ({len(self.weights)} for {n})")
        if self.kind == "centered":
            if len(self.groups) != n:
                raise ValueError(f"{self.metric}: a centered metric needs one group per item")
            missing = set(self.groups) - set(self.baselines)
            if missing:
                raise ValueError(f"{self.metric}: no random baseline for {sorted(missing)}")
        if len(set(self.ids)) != n:
            raise ValueError(f"{self.metric}: item ids repeat")
        return self

    def aggregate(self, keep: list[int] | None = None) -> float:
        """The metric over the items at positions `keep` (all when None; repeats count, as a bootstrap draws)."""
        idx = range(len(self.ids)) if keep is None else keep
        if self.kind == "ratio":
            den = sum(self.weights[i] for i in idx)
            return sum(self.values[i] for i in idx) / den if den else float("nan")
        if self.kind == "mean":
            n = len(idx)
            return sum(self.values[i] for i in idx) / n if n else float("nan")
        hits: dict[str, list[float]] = {}
        for i in idx:
            hits.setdefault(self.groups[i], []).append(self.values[i])
        if not hits:
            return float("nan")
        return sum((sum(v) / len(v) - self.baselines[g]) / (1 - self.baselines[g]) for g, v in hits.items()) / len(hits)

    def subset(self, ids: set[str]) -> ItemScores:
        """The same metric restricted to `ids` (e.g. the clean, uncontaminated items)."""
        keep = [i for i, item in enumerate(self.ids) if item in ids]
        return ItemScores(
            metric=self.metric, kind=self.kind, ids=[self.ids[i] for i in keep], values=[self.values[i] for i in keep],
            weights=[self.weights[i] for i in keep] if self.weights else [],
            groups=[self.groups[i] for i in keep] if self.groups else [],
            baselines=self.baselines,
        )


def text_ids(texts: list[str]) -> list[str]:
    """Stable ids of documents: sha256 of the text, `#n` appended to the n-th repeat of an identical text."""
    seen: dict[str, int] = {}
    ids = []
    for text in texts:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        n = seen.get(digest, 0)
        seen[digest] = n + 1
        ids.append(digest if n == 0 else f"{digest}#{n}")
    return ids


def save_items(out: Path, items: dict[str, ItemScores]) -> Path:
    path = out / ITEMS_FILE
    path.write_text(json.dumps({name: s.model_dump() for name, s in sorted(items.items())}))
    return path


def load_items(path: Path) -> dict[str, ItemScores]:
    """`items.json` of an eval report (a directory or the file); {} when the report predates per-item results."""
    path = path / ITEMS_FILE if path.is_dir() else path
    if not path.is_file():
        return {}
    return {name: ItemScores.model_validate(raw) for name, raw in json.loads(path.read_text()).items()}
