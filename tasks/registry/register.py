"""Register stage: log the pyfunc chat model to the pipeline's MLflow run, register a new version, run the gate.

The promotion gate moves alias `champion` to the new version only when it beats the current champion on the same
eval set: the gate metric (default val bits per byte) must improve by more than `gate_margin`, and no guard metric
(downstream accuracies) may drop by more than `guard_tolerance`. Metrics are compared only when both versions were
scored on the same data (the `eval_sets` fingerprints in the eval report); when the champion was scored on other
data, it is re-scored on this version's eval sets from its packaged checkpoint (`rescore_champion`), so models
trained on different crawls or with different tokenizers still compare on identical bytes. The first version of a model becomes champion; a refused one gets
`challenger`. The decision, its reason and both scores are recorded as version tags and in the version's
description, next to the model card (`tasks.registry.model_card`).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.artifacts import CheckpointRef, EvalReport, ModelVersionRef
from tasks.core.tracking import TrackingConfig, client

METRIC_TAG, EVAL_SET_TAG = "lmforge.metric.", "lmforge.eval_set."
LOWER_IS_BETTER = ("_loss", "_bpb", "_ppl")


class RegisterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_name: str = Field(default="lmforge", description="Registered model name in the MLflow registry.")
    gate_metric: str = Field(default="val_bpb", description="Metric the new version must improve to become champion.")
    gate_margin: float = Field(
        default=0.0, ge=0.0, description="Required improvement of gate_metric, in its own units (0 = any improvement)."
    )
    guard_metrics: list[str] = Field(
        default_factory=lambda: ["hellaswag_acc_norm", "arc_acc_norm", "lambada_acc"],
        description="Metrics that may not get worse by more than guard_tolerance (skipped when not comparable).",
    )
    guard_tolerance: float = Field(default=0.0, ge=0.0, description="Allowed drop of each guard metric.")
    rescore_champion: bool = Field(
        default=True, description="When the champion was scored on other data, score it on this version's eval sets."
    )
    safety_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Safety gate: metric -> highest allowed value (e.g. crows_pct_stereotype: 0.6, "
        "toxicity_bad_word_rate: 0.01, canary_extracted: 0); a version over any, or without the metric, is refused.",
    )
    champion_alias: str = Field(default="champion", description="Alias of the version that serves.")
    challenger_alias: str = Field(default="challenger", description="Alias of a version the gate refused.")
    intended_use: str = Field(
        default="Research and education: a small language model trained on a documented web crawl.",
        description="Model card: intended use.",
    )


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


def metric_group(metric: str) -> str:
    """The eval set a metric was measured on: `val_bpb` -> `val`, `hellaswag_acc` -> `hellaswag`."""
    return metric.rsplit("_", 1)[0] if metric.startswith("text/") else metric.split("_", 1)[0]


def same_eval_set(
    metric: str, new: dict[str, float], new_sets: dict[str, str], old: dict[str, float] | None, old_sets: dict[str, str]
) -> bool:
    group = metric_group(metric)
    return metric in new and metric in (old or {}) and bool(new_sets.get(group)) and new_sets.get(group) == old_sets.get(group)


def rescore_champion(tracking: TrackingConfig, champion, report: EvalReport) -> tuple[dict[str, float], dict[str, str]]:
    """The champion's metrics on this report's eval sets, from the checkpoint packaged in its registered model."""
    import mlflow

    from models.parallelize import resolve_device
    from tasks.evaluate.evaluate import rescore

    with tempfile.TemporaryDirectory(prefix="lmforge-champion-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=champion.source, dst_path=tmp, tracking_uri=tracking.uri())
        return rescore(Path(local) / "artifacts" / "checkpoint", report, str(resolve_device("auto")))


def improvement(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` (positive = better), whatever the metric's direction."""
    return old - new if lower_is_better(metric) else new - old


def gate_decision(
    cfg: RegisterConfig, new: dict[str, float], new_sets: dict[str, str], old: dict[str, float] | None,
    old_sets: dict[str, str],
) -> tuple[bool, str]:
    """(promote?, reason). `old` is None when the model has no champion yet."""
    for metric, limit in cfg.safety_thresholds.items():  # absolute limits: they hold for a first version too
        if metric not in new:
            return False, f"safety threshold on {metric} but the eval report has none; configure its probe"
        if new[metric] > limit:
            return False, f"{metric} {new[metric]:.4f} is over the safety threshold {limit}"
    if old is None:
        return True, "first version of the model"

    def comparable(metric: str) -> bool:
        return same_eval_set(metric, new, new_sets, old, old_sets)

    metric = cfg.gate_metric
    if metric not in new:
        return False, f"the eval report has no {metric}; cannot compare"
    if not comparable(metric):
        return False, f"the champion has no {metric} on the same eval set ({metric_group(metric)}); kept it"
    gain = improvement(metric, new[metric], old[metric])
    if gain <= cfg.gate_margin:
        return False, f"{metric} {new[metric]:.4f} vs champion {old[metric]:.4f}: not better by more than {cfg.gate_margin}"
    for guard in cfg.guard_metrics:
        if comparable(guard) and improvement(guard, new[guard], old[guard]) < -cfg.guard_tolerance:
            return False, f"{guard} dropped from {old[guard]:.4f} to {new[guard]:.4f} (tolerance {cfg.guard_tolerance})"
    return True, f"{metric} {new[metric]:.4f} beats champion {old[metric]:.4f} by {gain:.4f} (margin {cfg.gate_margin})"


def read_eval_sets(report: EvalReport) -> dict[str, str]:
    path = report.dir / "report.json"
    return json.loads(path.read_text()).get("eval_sets", {}) if path.is_file() else {}


def champion_scores(mlflow_client, cfg: RegisterConfig) -> tuple[Any, dict[str, float] | None, dict[str, str]]:
    from mlflow.exceptions import MlflowException

    try:
        champion = mlflow_client.get_model_version_by_alias(cfg.model_name, cfg.champion_alias)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST" and "not found" not in str(err).lower():
            raise
        return None, None, {}
    tags = champion.tags or {}
    metrics = {k[len(METRIC_TAG) :]: float(v) for k, v in tags.items() if k.startswith(METRIC_TAG)}
    sets = {k[len(EVAL_SET_TAG) :]: v for k, v in tags.items() if k.startswith(EVAL_SET_TAG)}
    return champion, metrics, sets


def existing_version(mlflow_client, cfg: RegisterConfig, report: EvalReport):
    """The version already registered for this exact eval report (same checkpoint, same scores), by any run.

    A retried task, or a rerun of an unchanged pipeline, must not register the same model twice.
    """
    from mlflow.exceptions import MlflowException

    try:
        versions = mlflow_client.search_model_versions(f"name='{cfg.model_name}'")
    except MlflowException:
        return None
    for version in versions:
        if (version.tags or {}).get("lmforge.eval_report") == report.manifest_sha256:
            return version
    return None


def run_register(
    cfg: RegisterConfig, tracking: TrackingConfig, run_id: str, ckpt: CheckpointRef, report: EvalReport
) -> ModelVersionRef:
    from mlflow.exceptions import MlflowException

    from models.pyfunc import save_chat_model
    from tasks.registry.model_card import model_card

    t0 = time.time()
    mlflow_client = client(tracking)
    done = existing_version(mlflow_client, cfg, report)
    if done is not None:
        # Aliases may have moved since; report the one the version holds now.
        alias = next(iter(mlflow_client.get_model_version(cfg.model_name, done.version).aliases), "")
        mlflow_client.set_tag(run_id, "lmforge.registered_as", f"models:/{cfg.model_name}/{done.version}")
        return ModelVersionRef(name=cfg.model_name, version=str(done.version), alias=alias,
                               model_uri=f"models:/{cfg.model_name}/{done.version}", run_id=done.run_id,
                               tracking_uri=tracking.uri())
    with tempfile.TemporaryDirectory(prefix="lmforge-register-") as tmp:
        model_dir = save_chat_model(ckpt.dir / ckpt.checkpoint, Path(tmp) / "model", Path(tmp) / "staging")
        mlflow_client.log_artifacts(run_id, str(model_dir), artifact_path="model")
    source = f"{mlflow_client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
    try:
        mlflow_client.create_registered_model(cfg.model_name, description="lmforge chat model; see version cards.")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    champion, old, old_sets = champion_scores(mlflow_client, cfg)
    new_sets = read_eval_sets(report)
    rescored = champion is not None and cfg.rescore_champion and not same_eval_set(
        cfg.gate_metric, report.metrics, new_sets, old, old_sets)
    if rescored:
        old, old_sets = rescore_champion(tracking, champion, report)
    promote, reason = gate_decision(cfg, report.metrics, new_sets, old, old_sets)
    reason += " (champion re-scored on this version's eval sets)" if rescored else ""
    alias = cfg.champion_alias if promote else cfg.challenger_alias
    tags = {f"{METRIC_TAG}{k}": repr(float(v)) for k, v in report.metrics.items()}
    tags |= {f"{EVAL_SET_TAG}{k}": v for k, v in new_sets.items()}
    tags |= {
        "lmforge.eval_report": report.manifest_sha256,
        "lmforge.checkpoint": ckpt.manifest_sha256,
        "lmforge.gate.decision": "promoted" if promote else "refused",
        "lmforge.gate.alias": alias,
        "lmforge.gate.reason": reason,
        "lmforge.gate.metric": cfg.gate_metric,
        "lmforge.gate.new_score": repr(report.metrics.get(cfg.gate_metric, float("nan"))),
        "lmforge.gate.champion_score": repr((old or {}).get(cfg.gate_metric, float("nan"))),
        "lmforge.gate.champion_version": str(champion.version) if champion is not None else "",
        "lmforge.gate.champion_rescored": str(rescored).lower(),
    }
    version = mlflow_client.create_model_version(cfg.model_name, source, run_id=run_id, tags=tags)
    gate = {"decision": tags["lmforge.gate.decision"], "alias": alias, "reason": reason, "metric": cfg.gate_metric,
            "new": report.metrics.get(cfg.gate_metric), "champion": (old or {}).get(cfg.gate_metric),
            "champion_version": champion.version if champion is not None else None}
    card = model_card(cfg, tracking, run_id, ckpt, report, gate, version=str(version.version))
    mlflow_client.log_text(run_id, card, f"model_card_v{version.version}.md")
    for name in ("report.json", "report.md"):  # the eval report next to the model it describes
        if (report.dir / name).is_file():
            mlflow_client.log_artifact(run_id, str(report.dir / name), artifact_path="evaluate")
    mlflow_client.update_model_version(cfg.model_name, version.version, description=card)
    mlflow_client.set_registered_model_alias(cfg.model_name, alias, version.version)
    mlflow_client.log_metric(run_id, "register/promoted", float(promote))
    mlflow_client.log_metric(run_id, "register/seconds", time.time() - t0)
    return ModelVersionRef(name=cfg.model_name, version=str(version.version), alias=alias,
                           model_uri=f"models:/{cfg.model_name}/{version.version}", run_id=run_id,
                           tracking_uri=tracking.uri())


@task(name="register", retries=1)
def register(
    cfg: RegisterConfig, tracking: TrackingConfig, run_id: str, ckpt: CheckpointRef, report: EvalReport
) -> ModelVersionRef:
    return run_register(cfg, tracking, run_id, ckpt, report)
