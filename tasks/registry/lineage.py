"""From a registered model version back to what made it: its MLflow run, stage outputs and training URLs.

The pipeline tags its MLflow run with each stage's output path and manifest hash (`tasks.core.tracking.log_stage`), and
the registry version points at that run. `lineage` follows those links; the retraining flow uses it to continue
from the champion (its checkpoint, its tokenizer, its fixed val split) and users use it to audit a model.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel

from tasks.core.artifacts import CheckpointRef, DocSet, TokenSet, load_done
from tasks.core.tracking import TrackingConfig, client


PARENT_TAG = "lmforge.parent"  # run tag: the model a fine-tune started from (models:/name/version or a directory)


class Lineage(BaseModel):
    """A model version and the stage outputs it came from (None where the output is no longer on disk)."""

    model_name: str
    version: str
    run_id: str
    parent: str | None = None  # the model it was fine-tuned from (models:/name/version or a checkpoint directory)
    crawl: DocSet | None
    tokens: TokenSet | None
    checkpoint: CheckpointRef | None


def stage_path(tags: dict[str, str], stage: str) -> Path | None:
    path = tags.get(f"lmforge.{stage}.path")
    return Path(path) if path else None


def lineage(tracking: TrackingConfig, model_name: str, alias: str) -> Lineage | None:
    """Lineage of the version holding `alias`, or None when no version holds it yet."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking)
    try:
        version = mlflow_client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or "not found" in str(error).lower():
            return None
        raise
    tags = mlflow_client.get_run(version.run_id).data.tags

    def done(stage: str, ref_type):
        path = stage_path(tags, stage)
        return load_done(path, ref_type) if path is not None and path.exists() else None

    return Lineage(
        model_name=model_name,
        version=str(version.version),
        run_id=version.run_id,
        parent=tags.get(PARENT_TAG),
        crawl=done("crawl", DocSet),
        tokens=done("tokenize", TokenSet),
        # A preference-tuned model's weights come from its DPO stage, a chat model's from SFT, a base's from training.
        checkpoint=done("dpo", CheckpointRef) or done("sft", CheckpointRef) or done("train", CheckpointRef),
    )


def training_urls(found: Lineage) -> list[str]:
    """The URLs of the crawled documents behind a model version (before curation dropped any)."""
    if found.crawl is None:
        raise FileNotFoundError(
            f"the crawl output of {found.model_name} v{found.version} (MLflow run {found.run_id}) is no longer on disk"
        )
    urls: list[str] = []
    for name in found.crawl.files:
        urls.extend(pq.read_table(found.crawl.dir / name, columns=["url"]).column("url").to_pylist())
    return urls


@task(name="record-parent", retries=2, retry_delay_seconds=2)
def record_parent(tracking: TrackingConfig, run_id: str, parent: str) -> None:
    """Tag the fine-tuning run with the model it started from, so its versions lead back to that version."""
    client(tracking).set_tag(run_id, PARENT_TAG, parent)


@task(name="champion-lineage", retries=2, retry_delay_seconds=2)
def champion_lineage(tracking: TrackingConfig, model_name: str, alias: str = "champion") -> Lineage | None:
    return lineage(tracking, model_name, alias)
