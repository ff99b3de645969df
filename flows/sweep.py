"""Hyperparameter sweep: the data stages once (cached), then trials in parallel Prefect tasks, each an MLflow child
run of one parent run; the best values are written out as a `--config` override."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from flows.config import PipelineConfig
from flows.presets import tiny_cpu
from infra.servers import on_accelerator
from tasks.collect.crawl import crawl
from tasks.core.report import tracked_run
from tasks.curate.curate import curate
from tasks.evaluate.evaluate import evaluate
from tasks.shard.shard import shard
from tasks.tokenize.tokenize import tokenize
from tasks.train.sweep import SweepSpace, log_trial, sweep_trials, write_best
from tasks.train.train import train


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: PipelineConfig = Field(default_factory=tiny_cpu, description="Data stages and the train config to vary.")
    space: SweepSpace = Field(default_factory=SweepSpace, description="What to try, how many, for how long.")


@flow(name="sweep", log_prints=True)
def sweep(cfg: SweepConfig = SweepConfig()) -> Path:
    base = cfg.base
    tokens = tokenize(base.tokenize, shard(base.shard, curate(base.curate, crawl(base.crawl))))
    with tracked_run(base.tracking, f"{base.name}-sweep", cfg.model_dump(mode="json")) as parent:
        trials = sweep_trials(cfg.space, base.train)
        checkpoints = [on_accelerator(train).submit(trial_cfg, tokens) for _, trial_cfg in trials]
        reports = [evaluate.submit(base.evaluate, checkpoint, tokens) for checkpoint in checkpoints]
        results = [
            log_trial.submit(base.tracking, parent, params, checkpoint, report, cfg.space.metric)
            for (params, _), checkpoint, report in zip(trials, checkpoints, reports)
        ]
        best = write_best(f"{base.name}-{parent[:8]}", [r.result() for r in results], cfg.space.metric)
    print(f"sweep: best values written to {best}; use them with `lmforge run --config {best}`")
    return best
