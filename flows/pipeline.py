"""The whole DAG: crawl → curate → shard → tokenize → train → evaluate → register, as one Prefect flow.

Composition only: each stage is a task from `tasks/`, handed the previous stage's ref. Finished stages are skipped
on a rerun (their directory already holds a manifest), so a failed run picks up where it stopped.
"""

from __future__ import annotations

from prefect import flow

from flows.config import PipelineConfig
from flows.presets import tiny_cpu
from tasks.collect.crawl import crawl
from tasks.core.report import PipelineSummary, summarize, track_stage, tracked_run
from tasks.curate.curate import curate
from tasks.evaluate.evaluate import evaluate
from tasks.registry.register import register
from tasks.shard.shard import shard
from tasks.tokenize.tokenize import tokenize
from tasks.train.train import train

# Training is the accelerator-bound stage: the tag lets a Prefect concurrency limit (`prefect concurrency-limit
# create gpu 1`) keep two flows from training on the same GPU at once.
train_on_accelerator = train.with_options(tags=["gpu"])


@flow(name="pipeline", log_prints=True)
def pipeline(cfg: PipelineConfig = tiny_cpu()) -> PipelineSummary:
    with tracked_run(cfg.tracking, cfg.name, cfg.model_dump(mode="json")) as run_id:
        docs = crawl(cfg.crawl)
        track_stage(cfg.tracking, run_id, "crawl", docs)
        curated = curate(cfg.curate, docs)
        track_stage(cfg.tracking, run_id, "curate", curated)
        shards = shard(cfg.shard, curated)
        track_stage(cfg.tracking, run_id, "shard", shards)
        tokens = tokenize(cfg.tokenize, shards)
        track_stage(cfg.tracking, run_id, "tokenize", tokens)
        checkpoint = train_on_accelerator(cfg.train, tokens, tracking=(cfg.tracking, run_id))
        track_stage(cfg.tracking, run_id, "train", checkpoint)
        report = evaluate(cfg.evaluate, checkpoint, tokens)
        track_stage(cfg.tracking, run_id, "evaluate", report)
        version = register(cfg.registry, cfg.tracking, run_id, checkpoint, report)
        summary = summarize(cfg.tracking, run_id, docs, curated, shards, tokens, checkpoint, report, version)
    return summary
