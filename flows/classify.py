"""Classifier fine-tuning: a base model → a classification head trained on {text, label} rows → registered.

`lmforge finetune --task classify` runs this flow: the base (a registry URI or checkpoint dir) is fetched, the
`classify` stage trains and scores the head on a held-out split, and the result is registered under its own name
through the same register path as the language models (`tasks.registry.register.run_register`: gate, promotion
lock, compare-and-set; gate metric: macro-F1).
"""

from __future__ import annotations

from prefect import flow

from tasks.core.artifacts import ModelVersionRef
from tasks.core.report import tracked_run
from tasks.core.tracking import TrackingConfig
from tasks.finetune.classify import ClassifyConfig, classify, register_classifier
from tasks.registry.resolve import base_ref


@flow(name="finetune-classify", log_prints=True)
def finetune_classify(cfg: ClassifyConfig, tracking: TrackingConfig | None = None) -> ModelVersionRef:
    tracking = tracking or TrackingConfig()
    if not cfg.train_file:
        raise ValueError("classify.train_file is empty: name a .jsonl or .parquet file of {text, label} rows")
    base = base_ref(cfg.base, tracking)
    ref = classify(cfg, base)
    with tracked_run(tracking, f"classify-{cfg.model_name}", {"classify": cfg.model_dump(mode="json")}) as run_id:
        version = register_classifier(cfg, tracking, run_id, ref, base)
    print(f"classify: {cfg.base} → {version.model_uri} ({version.alias}); macro-F1 {ref.metrics.get('cls_macro_f1')}")
    return version
