"""Downstream benchmarks from local files: multiple choice by log-likelihood, LAMBADA last-word accuracy.

The files are read by `tasks.core.benchmarks` (HellaSwag 6-line text, ARC JSONL, LAMBADA JSONL; `.bz2`/`.gz` ok).

Multiple choice follows lm-evaluation-harness: each choice is a continuation `" " + text` of the context, scored
by its summed log-probability (`acc`) and by that sum divided by the choice's length in characters, the leading
space not counted (`acc_norm`, lm-eval's length normalisation; `bench/eval_compare.py` checks the agreement).
LAMBADA counts a hit when every target token is the model's greedy choice. Scoring is pure torch over the model's
`forward(idx) -> (logits, loss)`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from tasks.core.benchmarks import MCItem


def file_fingerprint(path: Path | str, limit: int | None) -> str:
    """Identifies an eval set: the file's bytes and how many items were used."""
    digest = hashlib.sha256(Path(path).read_bytes())
    digest.update(f"limit={limit}".encode())
    return digest.hexdigest()[:16]


def continuation_scores(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str]], seq_len: int, device: str, batch_size: int = 8
) -> list[tuple[float, bool]]:
    """(sum of log p(continuation | context), continuation is the greedy choice) for each (context, cont) pair."""
    import torch

    rows = []
    for context, continuation in pairs:
        ctx, cont = [tokenizer.bos_id] + tokenizer.encode(context), tokenizer.encode(continuation)
        if not cont:
            raise ValueError(f"empty continuation after context {context[-60:]!r}")
        full = (ctx + cont)[-(seq_len + 1) :]  # keep the continuation, cut the context from the left
        rows.append((full, min(len(cont), len(full) - 1)))
    out: list[tuple[float, bool]] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk) - 1
        x = torch.full((len(chunk), width), tokenizer.pad_id, dtype=torch.long)
        y = torch.full((len(chunk), width), tokenizer.pad_id, dtype=torch.long)
        for i, (ids, _) in enumerate(chunk):
            x[i, : len(ids) - 1] = torch.tensor(ids[:-1])
            y[i, : len(ids) - 1] = torch.tensor(ids[1:])
        with torch.no_grad():
            logits, _ = model(x.to(device))
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()  # (B, T, V)
        for i, (ids, n_cont) in enumerate(chunk):
            end = len(ids) - 1
            span = slice(end - n_cont, end)  # positions whose targets are the continuation tokens
            target = y[i, span]
            picked = logprobs[i, span].gather(-1, target[:, None]).squeeze(-1)
            greedy = bool((logprobs[i, span].argmax(-1) == target).all())
            out.append((float(picked.sum()), greedy))
    return out


def predictions(logprobs: list[float], choices: list[str]) -> tuple[int, int]:
    """(argmax of the summed log-probabilities, argmax per character of the choice): lm-eval's acc and acc_norm."""
    norm = [lp / max(1, len(choice)) for lp, choice in zip(logprobs, choices)]  # characters, delimiter not counted
    best = max(range(len(choices)), key=lambda j: logprobs[j])
    return best, max(range(len(choices)), key=lambda j: norm[j])


def multiple_choice_outcomes(
    model: Any, tokenizer: Any, items: list[MCItem], seq_len: int, device: str, batch_size: int = 8
) -> dict[str, list[float]]:
    """Per item, 1.0 where the model picked the gold choice: by summed log-likelihood (`acc`) and per character of
    the choice (`acc_norm`)."""
    pairs = [(item.context, " " + choice) for item in items for choice in item.choices]
    scores = continuation_scores(model, tokenizer, pairs, seq_len, device, batch_size)
    out: dict[str, list[float]] = {"acc": [], "acc_norm": []}
    k = 0
    for item in items:
        pred, pred_norm = predictions([s for s, _ in scores[k : k + len(item.choices)]], item.choices)
        out["acc"].append(float(pred == item.gold))
        out["acc_norm"].append(float(pred_norm == item.gold))
        k += len(item.choices)
    return out


def summarise_multiple_choice(items: list[MCItem], outcomes: dict[str, list[float]]) -> dict[str, float]:
    """acc and acc_norm over `items`, with chance beside."""
    total = max(1, len(items))
    chance = sum(1.0 / len(item.choices) for item in items)
    return {"acc": sum(outcomes["acc"]) / total, "acc_norm": sum(outcomes["acc_norm"]) / total,
            "chance": chance / total, "n": float(len(items))}


def score_multiple_choice(
    model: Any, tokenizer: Any, items: list[MCItem], seq_len: int, device: str, batch_size: int = 8
) -> dict[str, float]:
    """acc (summed log-likelihood) and acc_norm (per character of the choice) over `items`, with chance beside."""
    outcomes = multiple_choice_outcomes(model, tokenizer, items, seq_len, device, batch_size)
    return summarise_multiple_choice(items, outcomes)


def lambada_outcomes(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str]], seq_len: int, device: str, batch_size: int = 8
) -> dict[str, list[float]]:
    """Per item: `acc` 1.0 where every target token is the greedy choice, `nll` the target word's nats."""
    scores = continuation_scores(model, tokenizer, pairs, seq_len, device, batch_size)
    return {"acc": [float(greedy) for _, greedy in scores], "nll": [-s for s, _ in scores]}


def summarise_lambada(pairs: list[tuple[str, str]], outcomes: dict[str, list[float]]) -> dict[str, float]:
    total = max(1, len(pairs))
    mean_nll = sum(outcomes["nll"]) / total
    return {"acc": sum(outcomes["acc"]) / total, "ppl": math.exp(min(mean_nll, 50.0)), "n": float(len(pairs))}


def score_lambada(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str]], seq_len: int, device: str, batch_size: int = 8
) -> dict[str, float]:
    """Last-word accuracy (greedy) and the target words' perplexity."""
    return summarise_lambada(pairs, lambada_outcomes(model, tokenizer, pairs, seq_len, device, batch_size))
