"""An ablation's results: one MLflow child run per recipe × seed, the per-recipe table and chart, and the verdict.

The verdict compares the best recipe with the runner-up by an exact one-sided permutation test of their seed
results (`permutation_p`): under "the recipe makes no difference" every split of the pooled seed values into two
groups of the same sizes is equally likely, and p is the share of splits whose lead is at least the observed one.
It assumes nothing about the noise's distribution, which matters with 3-5 seeds, where a standard deviation is
itself too noisy to lean on (a "2 × standard error" rule can pass on two seeds that happen to agree). The price is
honesty about small samples: with 2 seeds per recipe the smallest possible p is 1/6, so no lead can be called; with
3 it is 1/20, reached only when every seed of the best recipe beats every seed of the runner-up.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
from pathlib import Path

from prefect import task
from pydantic import BaseModel, Field

from tasks.ablate.plan import Recipe
from tasks.core.artifacts import CheckpointRef, EvalReport, ShardSet, TokenSet, lmforge_home
from tasks.core.tracking import TrackingConfig, flatten, log_child_run
from tasks.registry.register import seed_noise_flags

MAX_EXACT_SPLITS = 200_000  # beyond this many splits the permutation test draws 20,000 of them (seeded)


class ArmResult(BaseModel):
    """One trained and evaluated proxy: a recipe at a seed."""

    recipe: str
    seed: int
    run_id: str
    metrics: dict[str, float]
    docs: int = Field(description="Documents in the recipe's shards.")
    train_tokens: int = Field(description="Tokens in the recipe's train split.")
    tokens_seen: int
    checkpoint: str


class RecipeRow(BaseModel):
    recipe: str
    description: str
    values: list[float] = Field(description="The ranking metric, one value per seed (seed order).")
    mean: float
    std: float = Field(description="Sample standard deviation over seeds (0 with one seed).")
    means: dict[str, float] = Field(description="Mean over seeds of every metric the arms reported.")
    docs: int
    train_tokens: int
    epochs: float = Field(description="Tokens trained on / tokens in the recipe's train split.")


class Verdict(BaseModel):
    best: str
    runner_up: str | None
    lead: float = Field(description="Runner-up's mean minus the best's (in the metric's better direction).")
    standard_error: float = Field(description="Standard error of the difference of means (Welch), for reference.")
    p_value: float | None = Field(description="Exact one-sided permutation p of the lead; None with one recipe.")
    alpha: float
    separated: bool = Field(description="The lead exceeds the seed noise: p_value <= alpha.")
    text: str


class AblationSummary(BaseModel):
    metric: str
    maximize: bool
    rows: list[RecipeRow]
    verdict: Verdict
    table: str = Field(description="The results as a markdown table, best recipe first, with the verdict.")
    out_dir: str = Field(description="Where ablation.json, ablation.md and ablation.png were written.")
    parent_run_id: str


@task(name="log-arm", retries=2, retry_delay_seconds=2)
def log_arm(tracking: TrackingConfig, parent_run_id: str, recipe: Recipe, seed: int, shards: ShardSet,
            tokens: TokenSet, checkpoint: CheckpointRef, report: EvalReport) -> ArmResult:
    """One MLflow child run per arm: the recipe's overrides as params, eval metrics, its data's size, lineage tags."""
    epochs = checkpoint.tokens_seen / max(1, tokens.n_train_tokens)
    run_id = log_child_run(
        tracking, parent_run_id, f"{recipe.name}/seed={seed}",
        params={"recipe": recipe.name, "seed": str(seed), **flatten(recipe.overrides, "recipe."),
                **flatten(recipe.weights, "recipe.weights.")},
        metrics={**report.metrics, "docs": shards.n_docs, "train_tokens": tokens.n_train_tokens,
                 "tokens_seen": checkpoint.tokens_seen, "epochs": epochs, "steps": checkpoint.step,
                 "train_seconds": checkpoint.train_seconds, "final_train_loss": checkpoint.final_train_loss},
        tags={"lmforge.recipe": recipe.name, "lmforge.seed": str(seed), "lmforge.checkpoint": checkpoint.path,
              "lmforge.shard.path": shards.path, "lmforge.tokenize.path": tokens.path,
              "lmforge.evaluate.path": report.path,
              "lmforge.sources": ",".join(s.name for s in shards.sources) or "crawl"},
    )
    return ArmResult(recipe=recipe.name, seed=seed, run_id=run_id, metrics=report.metrics, docs=shards.n_docs,
                     train_tokens=tokens.n_train_tokens, tokens_seen=checkpoint.tokens_seen, checkpoint=checkpoint.path)


def aggregate(arms: list[ArmResult], recipes: list[Recipe], metric: str, maximize: bool) -> list[RecipeRow]:
    """One row per recipe (mean and spread over seeds), best first."""
    rows = []
    for recipe in recipes:
        mine = sorted((a for a in arms if a.recipe == recipe.name), key=lambda a: a.seed)
        if not mine:
            continue
        missing = [a.seed for a in mine if metric not in a.metrics]
        if missing:
            raise ValueError(f"ablation metric {metric!r} is not among recipe {recipe.name!r}'s eval metrics "
                             f"({', '.join(sorted(mine[0].metrics))})")
        values = [float(a.metrics[metric]) for a in mine]
        keys = sorted(set.intersection(*(set(a.metrics) for a in mine)))
        rows.append(RecipeRow(
            recipe=recipe.name, description=recipe.description, values=values, mean=statistics.fmean(values),
            std=statistics.stdev(values) if len(values) > 1 else 0.0,
            means={k: statistics.fmean(float(a.metrics[k]) for a in mine) for k in keys},
            docs=mine[0].docs, train_tokens=mine[0].train_tokens,
            epochs=statistics.fmean(a.tokens_seen / max(1, a.train_tokens) for a in mine)))
    return sorted(rows, key=lambda r: -r.mean if maximize else r.mean)


def permutation_p(best: list[float], other: list[float], maximize: bool) -> float:
    """One-sided p of `best` beating `other` by at least the observed difference of means, over every split of the
    pooled values into groups of these sizes (20,000 seeded draws when there are more than MAX_EXACT_SPLITS)."""
    pooled, n = best + other, len(best)
    sign = -1.0 if maximize else 1.0  # lead > 0 means `best` is better

    def lead(group: tuple[int, ...]) -> float:
        chosen = set(group)
        a = [pooled[i] for i in group]
        b = [v for i, v in enumerate(pooled) if i not in chosen]
        return sign * (statistics.fmean(b) - statistics.fmean(a))

    observed = lead(tuple(range(n)))
    if math.comb(len(pooled), n) <= MAX_EXACT_SPLITS:
        splits = list(itertools.combinations(range(len(pooled)), n))
    else:
        rng = random.Random(0)
        splits = [tuple(rng.sample(range(len(pooled)), n)) for _ in range(20_000)] + [tuple(range(n))]
    return sum(lead(s) >= observed - 1e-12 for s in splits) / len(splits)


def verdict(rows: list[RecipeRow], metric: str, alpha: float, maximize: bool) -> Verdict:
    best = rows[0]
    if len(rows) == 1:
        return Verdict(best=best.recipe, runner_up=None, lead=0.0, standard_error=0.0, p_value=None, alpha=alpha,
                       separated=False, text=f"only one recipe ({best.recipe}): nothing to compare")
    runner = rows[1]
    lead = (best.mean - runner.mean) if maximize else (runner.mean - best.mean)
    se = math.sqrt(best.std**2 / len(best.values) + runner.std**2 / len(runner.values))
    p = permutation_p(best.values, runner.values, maximize)
    floor = 1 / math.comb(len(best.values) + len(runner.values), len(best.values))
    separated = p <= alpha
    what = "exceeds" if separated else "does not exceed"
    text = (f"{best.recipe} leads {runner.recipe} by {lead:.4f} {metric} (2 × standard error = {2 * se:.4f}); "
            f"the lead {what} the seed noise: permutation p = {p:.3f} {'<=' if separated else '>'} {alpha}")
    if floor > alpha:
        text += (f". With {len(best.values)} and {len(runner.values)} seeds the smallest possible p is {floor:.3f}: "
                 f"run more seeds to be able to call a lead")
    return Verdict(best=best.recipe, runner_up=runner.recipe, lead=lead, standard_error=se, p_value=p, alpha=alpha,
                   separated=separated, text=text)


def extra_metrics(rows: list[RecipeRow], metric: str) -> list[str]:
    """The other comparable numbers for the table: bits per byte of other held-out text, downstream accuracies, CORE
    (`core_<N>`; its per-task breakdown `core/<task>_…` stays in ablation.json: twenty columns would drown it)."""
    keys = set.intersection(*(set(r.means) for r in rows)) if rows else set()
    wanted = (k for k in keys if k.endswith("_bpb") or "acc" in k or k.startswith("core_"))
    return sorted(k for k in wanted if k != metric and not k.startswith("core/"))


def table_markdown(rows: list[RecipeRow], metric: str, result: Verdict) -> str:
    extras = extra_metrics(rows, metric)
    header = ["recipe", "seeds", f"{metric} mean ± std", "seed range", *extras, "docs", "train tokens", "epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.recipe + (f" ({row.description})" if row.description else ""), str(len(row.values)),
                 f"{row.mean:.4f} ± {row.std:.4f}", f"{min(row.values):.4f} – {max(row.values):.4f}",
                 *(f"{row.means[k]:.4f}" for k in extras), str(row.docs), f"{row.train_tokens:,}", f"{row.epochs:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + f"\n\nVerdict: {result.text}.\n"
    if len(rows[0].values) > 1:
        table += (f"\nSeed noise of {rows[0].recipe} for the promotion gate (the proxy is your training when "
                  f"token_budget is its tokens): {seed_noise_flags(metric, rows[0].std, len(rows[0].values))}\n")
    return table


@task(name="write-ablation", retries=1)
def write_ablation(tracking: TrackingConfig, parent_run_id: str, name: str, recipes: list[Recipe],
                   arms: list[ArmResult], metric: str, maximize: bool, alpha: float) -> AblationSummary:
    """The table, chart and verdict: files under `$LMFORGE_HOME/ablations/<name>-<run>/`, artifacts and summary
    metrics on the MLflow parent run, and a Prefect markdown artifact."""
    from mlflow.entities import Metric, RunTag
    from prefect.artifacts import create_markdown_artifact

    from tasks.core import figures, tracking as mlflow_tracking

    rows = aggregate(arms, recipes, metric, maximize)
    result = verdict(rows, metric, alpha, maximize)
    table = table_markdown(rows, metric, result)
    out = lmforge_home() / "ablations" / f"{name}-{parent_run_id[:8]}"
    out.mkdir(parents=True, exist_ok=True)
    summary = AblationSummary(metric=metric, maximize=maximize, rows=rows, verdict=result, table=table,
                              out_dir=str(out), parent_run_id=parent_run_id)
    (out / "ablation.md").write_text(f"# Ablation {name}: {metric} ({'higher' if maximize else 'lower'} is better)"
                                     f"\n\n{table}")
    (out / "ablation.json").write_text(json.dumps(
        {**summary.model_dump(mode="json"), "arms": [a.model_dump(mode="json") for a in arms]}, indent=2))
    figures.ablation_chart([(r.recipe, r.values) for r in rows], metric, out / "ablation.png")
    mlflow_client = mlflow_tracking.client(tracking)
    for file in ("ablation.md", "ablation.json", "ablation.png"):
        mlflow_client.log_artifact(parent_run_id, str(out / file), artifact_path="ablation")
    mlflow_client.log_batch(
        parent_run_id,
        metrics=[Metric(f"{r.recipe}/{metric}_mean", r.mean, 0, 0) for r in rows]
        + [Metric(f"{r.recipe}/{metric}_std", r.std, 0, 0) for r in rows],
        tags=[RunTag("lmforge.ablation.best", result.best), RunTag("lmforge.ablation.separated", str(result.separated)),
              RunTag("lmforge.ablation.verdict", result.text[:5000])],
    )
    create_markdown_artifact(key="ablation", markdown=f"# Ablation {name}\n\n{table}", description=result.text[:200])
    return summary
