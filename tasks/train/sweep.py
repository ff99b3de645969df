"""Hyperparameter search: trial configs from a grid or random draws, each trial an MLflow child run, the best
written out as a config override.

A trial is a `TrainConfig` with some fields replaced (dotted keys under `train`, e.g. `lr`, `model.n_layer`,
`model.arch`) and a short time budget. Trials train and evaluate through the normal stage tasks, so a repeated
trial is served from its stage directory.
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.artifacts import CheckpointRef, EvalReport, lmforge_home
from tasks.core.tracking import TrackingConfig
from tasks.train.train import TrainConfig


class SweepSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, list[Any]] = Field(
        default_factory=lambda: {"lr": [1e-3, 3e-3], "model.n_layer": [2, 4], "warmup_steps": [10, 30]},
        description="Values to try per train field (dotted keys below `train`, e.g. model.n_embd, model.arch).",
    )
    mode: Literal["grid", "random"] = Field(default="grid", description="Every combination, or `n_trials` draws.")
    n_trials: int = Field(default=4, ge=1, description="Random draws (mode=random).")
    seed: int = Field(default=0, description="Seed of the random draws.")
    budget_seconds: float = Field(default=60.0, gt=0, description="Training time per trial.")
    metric: str = Field(default="val_bpb", description="Eval metric that ranks trials (lower is better).")


class TrialResult(BaseModel):
    params: dict[str, Any]
    metric: float
    run_id: str
    checkpoint: str


def expand_trials(space: SweepSpace) -> list[dict[str, Any]]:
    keys = sorted(space.params)
    if any(not space.params[key] for key in keys):
        raise ValueError(f"sweep: every parameter needs at least one value; empty: {[k for k in keys if not space.params[k]]}")
    grid = [dict(zip(keys, values)) for values in itertools.product(*(space.params[k] for k in keys))]
    if space.mode == "grid":
        return grid
    return random.Random(space.seed).sample(grid, min(space.n_trials, len(grid)))


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def trial_config(base: TrainConfig, params: dict[str, Any], budget_seconds: float) -> TrainConfig:
    """`base` with the trial's values and time budget; unknown keys fail with their name."""
    data = base.model_dump(mode="json")
    for key, value in params.items():
        set_dotted(data, key, value)
    # trials run side by side as tasks, one process each: a trial launching torchrun on every GPU would collide
    data.update(max_seconds=budget_seconds, checkpoint_every=0, progress=False, nproc_per_node=1)
    return TrainConfig.model_validate(data)


@task(name="sweep-trials")
def sweep_trials(space: SweepSpace, base: TrainConfig) -> list[tuple[dict[str, Any], TrainConfig]]:
    return [(params, trial_config(base, params, space.budget_seconds)) for params in expand_trials(space)]


@task(name="log-trial", retries=2, retry_delay_seconds=2)
def log_trial(
    tracking: TrackingConfig, parent_run_id: str, params: dict[str, Any], checkpoint: CheckpointRef, report: EvalReport,
    metric: str,
) -> TrialResult:
    """One MLflow child run per trial: its params, its eval metrics, a link to the checkpoint."""
    from tasks.core.tracking import log_child_run

    run_id = log_child_run(
        tracking, parent_run_id, ",".join(f"{k}={v}" for k, v in sorted(params.items())),
        params={f"train.{k}": str(v) for k, v in params.items()},
        metrics={**report.metrics, "train_seconds": checkpoint.train_seconds, "steps": checkpoint.step},
        tags={"lmforge.checkpoint": checkpoint.path, "lmforge.sweep_metric": metric},
    )
    value = float(report.metrics.get(metric, math.inf))
    return TrialResult(params=params, metric=value, run_id=run_id, checkpoint=checkpoint.path)


def best_trial(results: list[TrialResult]) -> TrialResult:
    finite = [r for r in results if math.isfinite(r.metric)]
    if not finite:
        raise ValueError("sweep: no trial produced a finite metric")
    return min(finite, key=lambda r: r.metric)


@task(name="write-best")
def write_best(name: str, results: list[TrialResult], metric: str) -> Path:
    """The winning values as a `--config` override file: `lmforge run --config <this file>`."""
    best = best_trial(results)
    override: dict[str, Any] = {}
    for key, value in best.params.items():
        set_dotted(override, key, value)
    out = lmforge_home() / "sweeps" / name / "best.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"# best of {len(results)} trials by {metric} = {best.metric:.4f} (MLflow run {best.run_id})\n"
    out.write_text(header + yaml.safe_dump({"train": override}, sort_keys=True))
    return out
