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
from typing import Any, Literal

from tasks.core import progress
from tasks.evaluate.items import ItemScores

SHUFFLE_SEED = 1337  # base_eval.evaluate_core: random.Random(1337).shuffle(data) before max_per_task
FEWSHOT_SEED = 1234  # core_eval.evaluate_example: random.Random(1234 + idx)
TASK_TYPES = ("multiple_choice", "schema", "language_modeling")
BASELINE_FILES = {"v1": "eval_meta_data.csv", "v2": "eval_meta_data_v2.csv"}
BaselineVersion = Literal["v1", "v2"]
LOGITS_BUDGET = 2**28  # floats of logits per forward pass (1 GiB): a 49k vocabulary fits ~5,000 tokens a batch


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
            raise ValueError(f"{config}: icl_tasks[{n}] needs label, dataset_uri, num_fewshot, icl_task_type: "
                             f"{err}") from err
        if task.task_type not in TASK_TYPES:
            raise ValueError(f"{config}: task {task.label} has icl_task_type {task.task_type!r}, "
                             f"not one of {TASK_TYPES}")
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


def task_items(bundle: CoreBundle, task: CoreTask, max_per_task: int,
               seed: int = SHUFFLE_SEED) -> list[tuple[int, dict]]:
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


def core_item_texts(bundle: Path | str, max_per_task: int,
                    seed: int = SHUFFLE_SEED) -> dict[str, list[tuple[str, str]]]:
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


def fewshot_examples(items: list[dict], idx: int, num_fewshot: int) -> list[dict]:
    """nanochat's few-shot draw for item `idx`: seeded by its position, from the other kept items (all of them when
    fewer are kept than asked for, where nanochat's `sample` would fail)."""
    if num_fewshot <= 0:
        return []
    others = [i for i in range(len(items)) if i != idx]
    return [items[i] for i in random.Random(FEWSHOT_SEED + idx).sample(others, min(num_fewshot, len(others)))]


def render_prompts(task: CoreTask, item: dict, examples: list[dict]) -> list[str]:
    """nanochat's prompts (its jinja templates, rendered): one per choice (multiple choice), per context option
    (schema), or [without, with] the continuation (language modelling). Few-shot examples end with a blank line."""
    d = task.delimiter
    if task.task_type == "multiple_choice":
        shots = "".join(f"{ex['query']}{d}{ex['choices'][ex['gold']]}\n\n" for ex in examples)
        return [f"{shots}{item['query']}{d}{choice}" for choice in item["choices"]]
    if task.task_type == "schema":
        shots = "".join(f"{ex['context_options'][ex['gold']]}{d}{ex['continuation']}\n\n" for ex in examples)
        return [f"{shots}{option}{d}{item['continuation']}" for option in item["context_options"]]
    shots = "".join(f"{ex['context'].strip()}{d}{ex['continuation']}\n\n" for ex in examples)
    prompt = f"{shots}{item['context'].strip()}{d}"
    # stripped as nanochat does, so a trailing space is not a token the continuation's first token would absorb
    return [prompt.strip(), prompt + item["continuation"]]


def common_length(seqs: list[list[int]], from_end: bool = False) -> int:
    """Length of the common prefix (or suffix) of token sequences."""
    n = min(len(s) for s in seqs)
    for i in range(n):
        pos = -1 - i if from_end else i
        if any(s[pos] != seqs[0][pos] for s in seqs):
            return i
    return n


def scored_spans(task: CoreTask, prompts: list[str], tokenizer: Any, max_len: int) -> list[tuple[list[int], int, int]]:
    """(tokens, start, end) per sequence to score: tokens[start:end] are the tokens judged. Cropped from the left to
    `max_len` tokens; a span never starts before position 1 (the first judged token needs a predicting position)."""
    seqs = [[tokenizer.bos_id, *tokenizer.encode(p)] for p in prompts]
    if task.task_type == "multiple_choice":  # same context, different continuations
        start = common_length(seqs)
        spans = [(s, start, len(s)) for s in seqs]
    elif task.task_type == "schema":  # different contexts, the same continuation
        suffix = common_length(seqs, from_end=True)
        spans = [(s, len(s) - suffix, len(s)) for s in seqs]
    else:  # only the prompt with the continuation is scored; its tokens past the prompt without it are judged
        without, with_cont = seqs
        spans = [(with_cont, common_length([without, with_cont]), len(with_cont))]
    cropped = []
    for tokens, start, end in spans:
        cut = max(0, len(tokens) - max_len)
        cropped.append((tokens[cut:], max(1, start - cut), end - cut))
    return cropped


def score_sequences(model: Any, seqs: list[tuple[list[int], int, int]], greedy: bool, pad_id: int, device: str,
                    batch_size: int) -> list[float]:
    """Per (tokens, start, end): the mean loss of tokens[start:end], or (`greedy`) 1.0 when every one of them is
    the model's argmax, else 0.0. Sequences are sorted by length and scored `batch_size` per forward pass (fewer
    when a batch's logits would pass `LOGITS_BUDGET` floats), right-padded: causal attention never looks at the
    padding, so a sequence scores as in a pass of its own."""
    import torch
    import torch.nn.functional as F

    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 1)
    order = sorted(range(len(seqs)), key=lambda j: -len(seqs[j][0]))
    scores = [0.0] * len(seqs)
    b = 0
    while b < len(order):
        width = len(seqs[order[b]][0])
        rows = order[b : b + max(1, min(batch_size, LOGITS_BUDGET // (width * vocab)))]
        b += len(rows)
        x = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for r, j in enumerate(rows):
            x[r, : len(seqs[j][0])] = torch.tensor(seqs[j][0])
        x = x.to(device)
        with torch.no_grad():
            logits, _ = model(x)  # (B, T, V)
        for r, j in enumerate(rows):
            _, start, end = seqs[j]
            predicted, target = logits[r, start - 1 : end - 1], x[r, start:end]  # position p predicts token p + 1
            if greedy:
                scores[j] = float(bool((predicted.argmax(-1) == target).all()))
            else:
                scores[j] = F.cross_entropy(predicted.float(), target, reduction="none").mean().item()
        progress.update("evaluate", done=b, total=len(order), unit="sequences")
    return scores


def score_task(model: Any, tokenizer: Any, task: CoreTask, items: list[dict], max_len: int, device: str,
               batch_size: int) -> list[bool]:
    """Whether each item is right, its sequences scored with every other item's (`score_sequences`)."""
    owner, seqs = [], []
    for idx, item in enumerate(items):
        prompts = render_prompts(task, item, fewshot_examples(items, idx, task.num_fewshot))
        spans = scored_spans(task, prompts, tokenizer, max_len)
        owner += [idx] * len(spans)
        seqs += spans
    lm = task.task_type == "language_modeling"
    scores = score_sequences(model, seqs, lm, tokenizer.bos_id, device, batch_size)
    if lm:  # one sequence per item
        return [score == 1.0 for score in scores]
    losses: dict[int, list[float]] = {}
    for idx, score in zip(owner, scores):
        losses.setdefault(idx, []).append(score)
    # nanochat's pick: the first option of lowest mean loss (list.index(min(...)), nan handling included)
    return [losses[idx].index(min(losses[idx])) == item["gold"] for idx, item in enumerate(items)]


@dataclass(frozen=True)
class CoreResult:
    bundle: CoreBundle
    max_per_task: int
    outcomes: dict[str, list[tuple[str, bool]]]  # label -> [(item id, right?)] in scoring order
    seconds: dict[str, float]  # label -> wall seconds

    @property
    def metric(self) -> str:
        return f"core_{len(self.outcomes)}"  # the number of tasks averaged, never the 22 of a full bundle

    def accuracy(self, label: str) -> float:
        hits = [right for _, right in self.outcomes[label]]
        return sum(hits) / len(hits) if hits else float("nan")

    def centered(self, label: str) -> float:
        base = 0.01 * self.bundle.baselines[label]
        return (self.accuracy(label) - base) / (1.0 - base)

    def metrics(self) -> dict[str, float]:
        out = {self.metric: sum(self.centered(t) for t in self.outcomes) / len(self.outcomes)}
        for label in self.outcomes:
            out[f"core/{label}_acc"] = self.accuracy(label)
            out[f"core/{label}_centered"] = self.centered(label)
        return out

    def items(self) -> dict[str, ItemScores]:
        """Per-item outcomes: CORE itself (centered, grouped by task) and each task's accuracy."""
        ids = [i for pairs in self.outcomes.values() for i, _ in pairs]
        values = [float(right) for pairs in self.outcomes.values() for _, right in pairs]
        groups = [label for label, pairs in self.outcomes.items() for _ in pairs]
        out = {self.metric: ItemScores(metric=self.metric, kind="centered", ids=ids, values=values, groups=groups,
                                       baselines={t: 0.01 * self.bundle.baselines[t] for t in self.outcomes})}
        for label, pairs in self.outcomes.items():
            name = f"core/{label}_acc"
            out[name] = ItemScores(metric=name, kind="mean", ids=[i for i, _ in pairs],
                                   values=[float(right) for _, right in pairs])
        return out

    def summary(self) -> dict[str, Any]:
        """report.json's `core` section: what was scored, what was missing, the baseline version, per-task rows."""
        tasks = {t.label: t for t in self.bundle.tasks}
        return {
            "metric": self.metric, "value": self.metrics()[self.metric], "bundle": str(self.bundle.root),
            "baseline": self.bundle.baseline_version,
            "max_per_task": self.max_per_task, "missing": self.bundle.missing,
            "tasks": {label: {"type": tasks[label].task_type, "shots": tasks[label].num_fewshot, "items": len(pairs),
                              "acc": self.accuracy(label), "centered": self.centered(label),
                              "random_baseline": self.bundle.baselines[label], "seconds": self.seconds[label]}
                      for label, pairs in self.outcomes.items()},
        }


def evaluate_core(model: Any, tokenizer: Any, bundle_dir: Path | str, max_per_task: int, baseline_version: str,
                  max_len: int, device: str, batch_size: int) -> CoreResult:
    """Score every present task of the bundle (see the module docstring)."""
    import time

    bundle = read_bundle(bundle_dir, baseline_version)
    outcomes, seconds = {}, {}
    for task in bundle.tasks:
        t0 = time.time()
        kept = task_items(bundle, task, max_per_task)
        right = score_task(model, tokenizer, task, [item for _, item in kept], max_len, device, batch_size)
        outcomes[task.label] = [(item_id(task, line), ok) for (line, _), ok in zip(kept, right)]
        seconds[task.label] = time.time() - t0
    return CoreResult(bundle, max_per_task, outcomes, seconds)
