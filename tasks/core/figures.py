"""The pictures runs log to MLflow: the training curve, the curation funnel and an ablation's chart, as PNG files.

`training_curve(log_jsonl, tokens_per_step, png)` plots train and val loss against tokens seen, with the learning
rate on a second axis, from the trainer's `log.jsonl`; `data_funnel(curate_stats, png)` plots documents and tokens
kept after each curation step, with each step's largest drop reasons written beside its bars; `ablation_chart`
plots an ablation's per-recipe mean and seed values. matplotlib is
imported inside the functions (heavy) and runs headless (Agg).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on a worker
    import matplotlib.pyplot as plt

    return plt


def training_curve(log_jsonl: Path, tokens_per_step: float, png: Path) -> Path:
    """Train / val loss vs tokens seen, lr on the right axis; returns `png`."""
    rows = [json.loads(line) for line in log_jsonl.read_text().splitlines() if line.strip()]
    train = [(r["step"] * tokens_per_step, r["train/loss"], r.get("train/lr")) for r in rows if "train/loss" in r]
    val = [(r["step"] * tokens_per_step, r["val/loss"]) for r in rows if "val/loss" in r]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if train:
        ax.plot([t for t, _, _ in train], [loss for _, loss, _ in train], label="train loss", color="tab:blue")
    if val:
        ax.plot([t for t, _ in val], [loss for _, loss in val], "o-", label="val loss", color="tab:orange")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (nats / token)")
    ax.grid(alpha=0.3)
    lr = [(t, rate) for t, _, rate in train if rate is not None]
    if lr:
        right = ax.twinx()
        right.plot([t for t, _ in lr], [rate for _, rate in lr], "--", color="tab:gray", label="learning rate")
        right.set_ylabel("learning rate")
        right.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.set_title("Training curve")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


def funnel_rows(stats: dict[str, Any]) -> list[tuple[str, float, float, dict[str, float]]]:
    """(step, docs kept, tokens kept, drop reasons) per curation step in pipeline order, from the curate manifest."""
    steps = sorted(stats.get("steps", {}).items(), key=lambda item: item[1].get("position", 0))
    rows = []
    for name, step in steps:
        reasons = {k: v for k, v in step.get("dropped", {}).items() if k != "total" and v}
        tokens = step.get("tokens", 0.0)
        rows.append((name, float(step.get("docs_out", 0.0)), float(tokens), reasons))
    return rows


def data_funnel(stats: dict[str, Any], png: Path) -> Path:
    """Documents and tokens (whitespace words) kept after each curation step, top drop reasons as labels."""
    rows = funnel_rows(stats)
    plt = _pyplot()
    fig, (docs_ax, tokens_ax) = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.8), dpi=110, sharey=True)
    names = [name for name, *_ in rows][::-1]  # first step on top
    docs = [d for _, d, _, _ in rows][::-1]
    tokens = [t for _, _, t, _ in rows][::-1]
    docs_ax.barh(names, docs, color="tab:blue")
    tokens_ax.barh(names, tokens, color="tab:green")
    docs_ax.set_xlabel("documents kept")
    tokens_ax.set_xlabel("tokens kept (whitespace words)")
    for y, count in enumerate(tokens):
        if not count:  # steps without datatrove's length stats (MinHash filter, PII) do not count tokens
            tokens_ax.text(0, y, " not counted at this step", va="center", fontsize=8, color="gray")
    for y, (_, kept, _, reasons) in enumerate(rows[::-1]):
        top = sorted(reasons.items(), key=lambda item: -item[1])[:2]
        label = f" {kept:,.0f}" + (" (−" + ", −".join(f"{v:,.0f} {k}" for k, v in top) + ")" if top else "")
        docs_ax.text(kept, y, label, va="center", fontsize=8)
    docs_ax.set_xlim(0, max(docs or [1]) * 1.9)  # room for the labels
    fig.suptitle("Data funnel: curation steps in order")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


def ablation_chart(recipes: list[tuple[str, list[float]]], metric: str, png: Path) -> Path:
    """Per recipe (best first, on top): the mean of `metric` over seeds as a bar with ± one standard deviation, and
    every seed's value as a dot, so the spread the verdict weighs is visible."""
    import statistics

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(recipes) + 1.6), dpi=110)
    names = [name for name, _ in recipes][::-1]
    values = [vals for _, vals in recipes][::-1]
    means = [statistics.fmean(v) for v in values]
    stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
    ax.barh(names, means, xerr=stds, color="tab:blue", alpha=0.5, capsize=4, label="mean ± std over seeds")
    for y, vals in enumerate(values):
        ax.plot(vals, [y] * len(vals), "o", color="tab:orange", label="one seed" if y == 0 else None)
    low, high = min(min(v) for v in values), max(max(v) for v in values)
    pad = (high - low) * 0.5 or abs(high) * 0.05 or 1.0
    ax.set_xlim(low - pad, high + pad)  # the differences, not the distance from zero, are what matter
    ax.set_xlabel(metric)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"Ablation: {metric} per recipe")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png
