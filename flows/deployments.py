"""The deployments users trigger from the Prefect UI, and the process that runs them (`lmforge serve-flows`).

`serve` keeps one long-lived process polling the Prefect server for runs of these deployments, the simplest
Prefect 3 set-up on one machine. For work pools and separate workers (e.g. a GPU pool), `prefect.yaml` declares the
same deployments for `prefect deploy`; see README, Operate.
"""

from __future__ import annotations

from flows.pipeline import pipeline
from flows.stages import (
    crawl_flow,
    curate_flow,
    evaluate_flow,
    import_flow,
    mix_flow,
    shard_flow,
    tokenize_flow,
    train_flow,
)

RETRAIN_CRON = "0 3 * * 1"  # weekly, Monday 03:00 UTC


def build_deployments(retrain_cron: str | None = RETRAIN_CRON) -> list:
    """Every deployment with its typed parameters; Prefect derives the UI form from the pydantic configs."""
    from flows.ablate import ablate
    from flows.dpo import finetune_dpo
    from flows.finetune import finetune
    from flows.quality import train_quality
    from flows.retrain import retrain
    from flows.sweep import sweep

    deployments = [
        pipeline.to_deployment(
            name="pipeline", tags=["lmforge"],
            description="The whole pipeline: crawl → curate → shard → tokenize → train → evaluate → register.",
        ),
        retrain.to_deployment(
            name="retrain", cron=retrain_cron, tags=["lmforge", "scheduled"],
            description="Incremental crawl, curation with cross-run dedup, continued pretraining, promotion gate.",
        ),
        finetune.to_deployment(
            name="finetune", tags=["lmforge"],
            description="Chat SFT of a registered base model; registers the result as lmforge-chat.",
        ),
        finetune_dpo.to_deployment(
            name="finetune-dpo", tags=["lmforge"],
            description="DPO preference tuning of a chat model; gated and registered as lmforge-dpo with lineage.",
        ),
        train_quality.to_deployment(
            name="quality-classifier", tags=["lmforge"],
            description="Train the fasttext quality classifier for curation; model and metrics to MLflow.",
        ),
        sweep.to_deployment(
            name="sweep", tags=["lmforge"],
            description="Hyperparameter search (grid or random) on a short budget; best values as a config override.",
        ),
        ablate.to_deployment(
            name="ablate", tags=["lmforge"],
            description="Data ablation: recipes × seeds of small proxies on one held-out set; table, chart, verdict.",
        ),
    ]
    for stage_flow in (crawl_flow, mix_flow, curate_flow, shard_flow, import_flow, tokenize_flow, train_flow, evaluate_flow):
        deployments.append(stage_flow.to_deployment(name=stage_flow.name, tags=["lmforge", "stage"]))
    return deployments


def serve_flows(retrain_cron: str | None = RETRAIN_CRON, limit: int | None = None) -> None:
    """Register the deployments with the Prefect server and execute their runs until interrupted."""
    from prefect import serve

    serve(*build_deployments(retrain_cron), limit=limit)
