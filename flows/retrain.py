"""Continuous retraining: what is new on the web since the last crawl, folded into the champion.

Incremental crawl (conditional requests; only new or changed pages) → curation with dedup against earlier runs →
tokenize with the champion's tokenizer → continued pretraining from the champion's weights (or from scratch) →
evaluation on the champion's own val split, so old and new scores compare → promotion gate. A run that finds
nothing new ends early and says so. Scheduled weekly by the `retrain` deployment.
"""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, task
from pydantic import BaseModel, ConfigDict, Field

from flows.config import PipelineConfig
from flows.presets import tiny_cpu
from infra.servers import on_accelerator
from tasks.collect.crawl import crawl
from tasks.core.report import track_stage, tracked_run
from tasks.curate.curate import curate
from tasks.evaluate.evaluate import evaluate
from tasks.registry.lineage import champion_lineage
from tasks.registry.register import register
from tasks.shard.shard import shard
from tasks.tokenize.tokenize import tokenize
from tasks.train.train import train


class RetrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pipeline: PipelineConfig = Field(default_factory=tiny_cpu, description="Stage configs, as for the pipeline.")
    from_scratch: bool = Field(default=False, description="Train a new model instead of continuing the champion.")
    snapshot: str | None = Field(
        default=None, description="Label of this crawl (a new stage directory per label); None = the current time."
    )


class RetrainResult(BaseModel):
    status: str = Field(description="'nothing-new', 'promoted' or 'refused'.")
    new_documents: int
    model_uri: str | None = None
    alias: str | None = None


@task(name="snapshot-label")
def snapshot_label() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@flow(name="retrain", log_prints=True)
def retrain(cfg: RetrainConfig = RetrainConfig()) -> RetrainResult:
    base = cfg.pipeline
    snapshot = cfg.snapshot or snapshot_label()
    docs = crawl(base.crawl.model_copy(update={"incremental": True, "snapshot": snapshot}))
    if docs.n_docs == 0:
        print("retrain: the crawl found no new or changed pages; nothing to train on")
        return RetrainResult(status="nothing-new", new_documents=0)
    curated = curate(base.curate.model_copy(update={"cross_run_dedup": True}), docs)
    if curated.n_docs == 0:
        print(f"retrain: all {docs.n_docs} new pages were filtered or duplicates of earlier runs; nothing to train on")
        return RetrainResult(status="nothing-new", new_documents=0)

    champion = champion_lineage(base.tracking, base.registry.model_name, base.registry.champion_alias)
    continue_champion = champion is not None and champion.checkpoint is not None and not cfg.from_scratch
    tokenize_cfg, train_cfg = base.tokenize, base.train
    if continue_champion:
        tokenize_cfg = tokenize_cfg.model_copy(update={"tokenizer_file": champion.checkpoint.tokenizer_file})
        train_cfg = train_cfg.model_copy(
            update={"init_from": str(champion.checkpoint.dir / champion.checkpoint.checkpoint)}
        )

    with tracked_run(base.tracking, f"{base.name}-retrain-{snapshot}", cfg.model_dump(mode="json")) as run_id:
        track_stage(base.tracking, run_id, "crawl", docs)
        track_stage(base.tracking, run_id, "curate", curated)
        shards = shard(base.shard, curated)
        track_stage(base.tracking, run_id, "shard", shards)
        tokens = tokenize(tokenize_cfg, shards)
        track_stage(base.tracking, run_id, "tokenize", tokens)
        checkpoint = on_accelerator(train)(train_cfg, tokens, tracking=(base.tracking, run_id))
        track_stage(base.tracking, run_id, "train", checkpoint)
        # The champion's own val split is the fixed eval set: same tokenizer, so the scores compare.
        eval_tokens = champion.tokens if continue_champion and champion.tokens is not None else tokens
        report = evaluate(base.evaluate, checkpoint, eval_tokens)
        track_stage(base.tracking, run_id, "evaluate", report)
        version = register(base.registry, base.tracking, run_id, checkpoint, report)
    status = "promoted" if version.alias == base.registry.champion_alias else "refused"
    return RetrainResult(status=status, new_documents=curated.n_docs, model_uri=version.model_uri, alias=version.alias)
