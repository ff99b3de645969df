"""CORE (DCLM's in-context-learning score) over a bundle in nanochat's `eval_bundle` layout, item for item as
nanochat's `core_eval.evaluate_task` and `scripts/base_eval.evaluate_core` compute it (karpathy/nanochat, MIT).

A bundle is a directory with `core.yaml` (`icl_tasks`: label, dataset_uri, num_fewshot, icl_task_type,
continuation_delimiter), `eval_data/<dataset_uri>` (one JSON object per line) and the random baselines in
`eval_meta_data.csv` (DCLM v1: what GPT-2's 0.2565 and nanochat use) or `eval_meta_data_v2.csv` (v2). A task whose
data file is absent is skipped and named (`CoreBundle.missing`); CORE is then `core_<N>`, the mean over the N tasks
scored, never presented as the 22-task figure.

As nanochat: each task's items are shuffled by `random.Random(1337)` and cut to `max_per_task` (-1 = all); item i's
few-shot examples are `random.Random(1234 + i).sample` of the other kept items; every prompt starts with the
tokenizer's BOS and is cropped from the left to the model's context. Multiple choice and schema items pick the option
with the lowest mean loss over the tokens after the options' common prefix (schema: the common suffix); a language
modelling item is right when every continuation token is the greedy choice. Centered accuracy is
(acc - b) / (1 - b) with b the task's random baseline. Unlike nanochat, which runs one forward pass per item, the
prompts of many items share a forward pass (`score_task`), right-padded, so the scores are the same.

Stable for other stages (the contamination check): `core_item_texts(bundle: Path | str, max_per_task: int,
seed: int = SHUFFLE_SEED) -> dict[str, list[tuple[str, str]]]`, each present task's label -> [(item id, item text)]
for the items CORE scores, in scoring order. The id is `"<label>/<0-based line of the jsonl file>"` (items.py); the
text is the item as a page publishing it with its answer would read: query + delimiter + gold choice (multiple
choice), gold context option + delimiter + continuation (schema), context + delimiter + continuation (language
modelling).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SHUFFLE_SEED = 1337  # base_eval.evaluate_core: random.Random(1337).shuffle(data) before max_per_task
FEWSHOT_SEED = 1234  # core_eval.evaluate_example: random.Random(1234 + idx)
TASK_TYPES = ("multiple_choice", "schema", "language_modeling")
BASELINE_FILES = {"v1": "eval_meta_data.csv", "v2": "eval_meta_data_v2.csv"}
BaselineVersion = Literal["v1", "v2"]


@dataclass(frozen=True)
class CoreTask:
    label: str
    task_type: str
    dataset_uri: str
    num_fewshot: int
    delimiter: str


@dataclass(frozen=True)
class CoreBundle:
    root: Path
    tasks: list[CoreTask]  # the tasks whose data file is present, in core.yaml's order
    missing: list[str]  # labels named in core.yaml whose data file is absent
    baselines: dict[str, float]  # label -> random baseline in percent, as the csv states it
    baseline_version: str | None

    def data_path(self, task: CoreTask) -> Path:
        return self.root / "eval_data" / task.dataset_uri


def read_bundle(root: Path | str, baseline_version: str | None = "v1") -> CoreBundle:
    """The bundle's tasks (present and missing) and the random baselines of `baseline_version` ("v1" or "v2"; None:
    no baselines read, for a caller that needs the items only)."""
    import yaml

    root = Path(root)
    config = root / "core.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"evaluate.core_bundle: {root} has no core.yaml (nanochat's eval_bundle layout)")
    tasks, missing = [], []
    for n, raw in enumerate((yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("icl_tasks") or []):
        try:
            shots = raw["num_fewshot"]
            task = CoreTask(raw["label"], raw["icl_task_type"], raw["dataset_uri"],
                            int(shots[0] if isinstance(shots, list) else shots), raw.get("continuation_delimiter", " "))
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise ValueError(f"{config}: icl_tasks[{n}] needs label, dataset_uri, num_fewshot, icl_task_type: {err}")
        if task.task_type not in TASK_TYPES:
            raise ValueError(f"{config}: task {task.label} has icl_task_type {task.task_type!r}, not one of {TASK_TYPES}")
        (tasks if (root / "eval_data" / task.dataset_uri).is_file() else missing).append(task)
    if not tasks:
        raise ValueError(f"evaluate.core_bundle: none of the tasks in {config} has its file under {root / 'eval_data'}")
    if baseline_version is None:
        return CoreBundle(root, tasks, [t.label for t in missing], {}, None)
    if baseline_version not in BASELINE_FILES:
        raise ValueError(f"evaluate.core_baseline: {baseline_version!r} is not one of {sorted(BASELINE_FILES)}")
    meta = root / BASELINE_FILES[baseline_version]
    if not meta.is_file():
        raise FileNotFoundError(f"evaluate.core_baseline={baseline_version}: {meta} does not exist")
    with open(meta, encoding="utf-8", newline="") as f:
        baselines = {row["Eval Task"]: float(row["Random baseline"]) for row in csv.DictReader(f)}
    unknown = [t.label for t in tasks if t.label not in baselines]
    if unknown:
        raise ValueError(f"{meta} has no random baseline for {unknown}")
    return CoreBundle(root, tasks, [t.label for t in missing], baselines, baseline_version)


def task_items(bundle: CoreBundle, task: CoreTask, max_per_task: int, seed: int = SHUFFLE_SEED) -> list[tuple[int, dict]]:
    """(0-based line, item) of the items scored, in nanochat's order: all lines shuffled by `seed`, then cut."""
    path = bundle.data_path(task)
    rows: list[tuple[int, dict]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            try:  # nanochat reads every line; a blank one would fail there too, so it is an error, not skipped
                rows.append((n, json.loads(line.strip())))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n + 1}: not a JSON object ({err})") from err
    random.Random(seed).shuffle(rows)  # the permutation depends on the length only: the same as nanochat's
    return rows[:max_per_task] if max_per_task > 0 else rows


def item_id(task: CoreTask, line: int) -> str:
    return f"{task.label}/{line}"


def item_text(task: CoreTask, item: dict) -> str:
    """The item with its answer, as a page publishing it would read (the contamination check's query text)."""
    d = task.delimiter
    if task.task_type == "multiple_choice":
        return f"{item['query']}{d}{item['choices'][item['gold']]}"
    if task.task_type == "schema":
        return f"{item['context_options'][item['gold']]}{d}{item['continuation']}"
    return f"{item['context'].strip()}{d}{item['continuation']}"


def core_item_texts(bundle: Path | str, max_per_task: int, seed: int = SHUFFLE_SEED) -> dict[str, list[tuple[str, str]]]:
    """Each present task's label -> [(item id, item text)] of the items CORE scores (see the module docstring)."""
    found = read_bundle(bundle, baseline_version=None)
    return {task.label: [(item_id(task, line), item_text(task, item))
                         for line, item in task_items(found, task, max_per_task, seed)] for task in found.tasks}


def bundle_fingerprint(bundle: CoreBundle, max_per_task: int) -> str:
    """The eval set: core.yaml, every data file scored, the random baselines used, max_per_task, baseline version."""
    digest = hashlib.sha256((bundle.root / "core.yaml").read_bytes())
    for path in sorted({bundle.data_path(t) for t in bundle.tasks}):
        digest.update(path.relative_to(bundle.root).as_posix().encode() + b"\x00" + path.read_bytes())
    digest.update((bundle.root / BASELINE_FILES[bundle.baseline_version]).read_bytes())
    digest.update(f"max_per_task={max_per_task};baseline={bundle.baseline_version}".encode())
    return digest.hexdigest()[:16]
