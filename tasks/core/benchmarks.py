"""The standard benchmark files, read from disk: HellaSwag, ARC and LAMBADA items, and the text of each item.

Formats (the standard distributions, optionally `.bz2`/`.gz` compressed):
- HellaSwag, 6-line text format: context, gold label (0-3), then the four endings; one item per 6 lines.
- ARC (AI2 JSONL): `{"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"}`.
- LAMBADA (OpenAI JSONL): `{"text": ...}`; the target is the last whitespace-separated word.

The evaluate stage scores these items (`tasks.evaluate.downstream`); the contamination check and curation's
decontamination step need the text a web page leaking an item would contain (`item_texts`), so the readers live
here, below both stages.
"""

from __future__ import annotations

import bz2
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

BenchmarkKind = Literal["hellaswag", "arc", "lambada"]
ARC_PROMPT = ("Question: ", "\nAnswer:")  # how an ARC question is put to the model (lm-eval's arc_easy doc_to_text)


@dataclass(frozen=True)
class MCItem:
    context: str
    choices: list[str]
    gold: int


def open_text(path: Path | str) -> IO[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"eval file {path} does not exist; fix the path in the evaluate config")
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8")


def load_hellaswag(path: Path | str, limit: int | None = None) -> list[MCItem]:
    with open_text(path) as f:
        lines = [line.rstrip("\n") for line in f]
    if len(lines) % 6 == 1 and lines[-1] == "":
        lines = lines[:-1]
    if len(lines) % 6:
        raise ValueError(f"{path}: HellaSwag text format needs 6 lines per item; got {len(lines)} lines")
    items = []
    for i in range(0, len(lines), 6):
        label = lines[i + 1].strip()
        if label not in {"0", "1", "2", "3"}:
            raise ValueError(f"{path}:{i + 2}: expected the gold label 0-3, got {label!r}")
        items.append(MCItem(lines[i], lines[i + 2 : i + 6], int(label)))
        if limit is not None and len(items) >= limit:
            break
    return items


def load_arc(path: Path | str, limit: int | None = None) -> list[MCItem]:
    items = []
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                choices = row["question"]["choices"]
                labels = [c["label"] for c in choices]
                gold = labels.index(row["answerKey"])
                stem = row["question"]["stem"]
            except (KeyError, ValueError, TypeError) as err:
                raise ValueError(f"{path}:{n}: not an ARC JSONL row (question.stem/choices, answerKey): {err}") from err
            items.append(MCItem(f"{ARC_PROMPT[0]}{stem}{ARC_PROMPT[1]}", [c["text"] for c in choices], gold))
            if limit is not None and len(items) >= limit:
                break
    return items


def load_lambada(path: Path | str, limit: int | None = None) -> list[tuple[str, str]]:
    pairs = []
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            text = json.loads(line).get("text")
            if not isinstance(text, str) or " " not in text.strip():
                raise ValueError(f"{path}:{n}: LAMBADA rows need a 'text' of several words")
            context, word = text.strip().rsplit(" ", 1)
            pairs.append((context, " " + word))
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


def item_texts(kind: BenchmarkKind, path: Path | str, limit: int | None = None) -> dict[str, list[str]]:
    """Item id (0-based position, `tasks.evaluate.items`) → the item's texts: for multiple choice, the question or
    context followed by each choice (a page may publish the distractors too; ARC's `Question:`/`Answer:` framing is
    the evaluator's, not the item's, so it is left out); for LAMBADA, the passage."""
    if kind == "lambada":
        return {str(i): [context + word] for i, (context, word) in enumerate(load_lambada(path, limit))}
    items = (load_hellaswag if kind == "hellaswag" else load_arc)(path, limit)
    texts = {}
    for i, item in enumerate(items):
        context = item.context
        if kind == "arc":
            context = context.removeprefix(ARC_PROMPT[0]).removesuffix(ARC_PROMPT[1])
        texts[str(i)] = [f"{context} {choice}" for choice in item.choices]
    return texts
