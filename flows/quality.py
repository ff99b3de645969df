"""Train the fasttext quality classifier (DCLM-style) and log it to MLflow: model artifact + held-out metrics.

Use the model in curation with `--set curate.quality_model_path=<path printed / logged>`.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from flows.presets import tiny_cpu
from tasks.collect.config import CrawlConfig
from tasks.collect.crawl import crawl
from tasks.core.report import log_file, track_stage, tracked_run
from tasks.core.tracking import TrackingConfig
from tasks.curate.quality_stage import QualityModelRef, QualityTrainConfig, quality_classifier


class QualityFlowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quality: QualityTrainConfig = Field(default_factory=QualityTrainConfig, description="Sets and classifier.")
    crawl: CrawlConfig | None = Field(
        default_factory=lambda: tiny_cpu().crawl,
        description="Crawl whose documents the URL patterns select from (reused when already done); None = files only.",
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking server.")


@flow(name="quality-classifier", log_prints=True)
def train_quality(cfg: QualityFlowConfig = QualityFlowConfig()) -> QualityModelRef:
    docs = crawl(cfg.crawl) if cfg.crawl is not None else None
    model = quality_classifier(cfg.quality, docs)
    with tracked_run(cfg.tracking, "quality-classifier", cfg.model_dump(mode="json")) as run_id:
        track_stage(cfg.tracking, run_id, "quality", model)
        log_file(cfg.tracking, run_id, str(model.dir / model.model_file), "quality-classifier")
    print(f"quality classifier: {model.dir / model.model_file} "
          f"(held-out precision {model.metrics['precision']:.2f}, recall {model.metrics['recall']:.2f})")
    return model
