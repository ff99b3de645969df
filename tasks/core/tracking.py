"""MLflow tracking: one run per pipeline run, stage statistics logged under the stage's prefix.

The embedded default is a SQLite backend store and a local artifact store under `LMFORGE_HOME`; point
`tracking_uri` at an MLflow server (`http://…`) or a database URI to share runs. Runs are addressed by id through
`MlflowClient`, never through MLflow's thread-local "active run", because Prefect runs tasks in worker threads.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.artifacts import StageRef, lmforge_home


class TrackingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; None = $MLFLOW_TRACKING_URI, else the embedded SQLite store at "
        "$LMFORGE_HOME/mlflow.db.",
    )
    experiment: str = Field(default="lmforge", description="MLflow experiment the pipeline runs log to.")

    def uri(self) -> str:
        if self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
            return self.tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
        home = lmforge_home()
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{home / 'mlflow.db'}"

    def artifact_root(self) -> str | None:
        """Where a new experiment stores artifacts: beside a local SQLite store; None lets a server decide."""
        uri = self.uri()
        if uri.startswith("sqlite:///"):
            return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
        return None


def client(cfg: TrackingConfig):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=cfg.uri(), registry_uri=cfg.uri())


# MLflow 3's UI files an experiment by this tag: without it, a run with logged models opens under "GenAI";
# `custom_model_development` is the model-training view (runs, charts, registered models).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(cfg: TrackingConfig) -> str:
    mlflow_client = client(cfg)
    experiment = mlflow_client.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        return mlflow_client.create_experiment(cfg.experiment, artifact_location=cfg.artifact_root(), tags=EXPERIMENT_KIND)
    for key, value in EXPERIMENT_KIND.items():  # an experiment made before the tag existed, or by hand
        if key not in experiment.tags:
            mlflow_client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested config → MLflow params: `{"train": {"lr": 1e-3}}` → `{"train.lr": "0.001"}`."""
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    value = obj if isinstance(obj, str) else json.dumps(obj)
    return {prefix.rstrip("."): value[:6000]}


def open_run(cfg: TrackingConfig, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
    """Start the pipeline's MLflow run and log its whole config as params; returns the run id."""
    from mlflow.entities import Param, RunTag

    mlflow_client = client(cfg)
    run = mlflow_client.create_run(experiment_id(cfg), run_name=run_name, tags=tags)
    items = [Param(key, value) for key, value in flatten(params).items()]
    for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
        mlflow_client.log_batch(run.info.run_id, params=items[start : start + 100])
    mlflow_client.log_batch(run.info.run_id, tags=[RunTag("lmforge.run_name", run_name)])
    return run.info.run_id


def log_child_run(
    cfg: TrackingConfig, parent_run_id: str, run_name: str, params: dict[str, str], metrics: dict[str, float],
    tags: dict[str, str],
) -> str:
    """One finished MLflow child run of `parent_run_id` (a sweep trial, an ablation arm); non-finite metrics are left
    out (MLflow stores them, but they break its charts). Returns the child's run id."""
    import math

    from mlflow.entities import Metric, Param, RunTag

    mlflow_client = client(cfg)
    parent = mlflow_client.get_run(parent_run_id)
    run = mlflow_client.create_run(parent.info.experiment_id, run_name=run_name,
                                   tags={"mlflow.parentRunId": parent_run_id, **tags})
    items = [Param(key, value[:6000]) for key, value in params.items()]
    finite = [Metric(key, float(value), 0, 0) for key, value in metrics.items() if math.isfinite(float(value))]
    for start in range(0, max(len(items), len(finite)), 100):  # MLflow caps a batch at 100 params
        mlflow_client.log_batch(run.info.run_id, params=items[start : start + 100], metrics=finite[start : start + 100])
    mlflow_client.log_batch(run.info.run_id, tags=[RunTag("lmforge.run_name", run_name)])
    mlflow_client.set_terminated(run.info.run_id)
    return run.info.run_id


def numeric_stats(stats: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers in a (nested) stats dict, keyed `a/b/c`, as MLflow metrics."""
    out: dict[str, float] = {}
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(numeric_stats(value, f"{name}/"))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)):
            out[name] = float(value)
    return out


def log_stage(cfg: TrackingConfig, run_id: str, stage: str, ref: StageRef) -> None:
    """Log a finished stage: its manifest stats as `<stage>/…` metrics; the manifest and the stage's markdown
    documents (dataset card, eval report, crawl report) as artifacts under `stages/<stage>/`."""
    from mlflow.entities import Metric, RunTag

    mlflow_client = client(cfg)
    manifest = ref.manifest()
    stats = numeric_stats(manifest.get("stats", {}), f"{stage}/")
    if manifest.get("seconds") is not None:
        stats[f"{stage}/seconds"] = float(manifest["seconds"])
    timestamp = int(time.time() * 1000)
    metrics = [Metric(key, value, timestamp, 0) for key, value in stats.items()]
    for start in range(0, len(metrics), 1000):
        mlflow_client.log_batch(run_id, metrics=metrics[start : start + 1000])
    mlflow_client.log_batch(
        run_id, tags=[RunTag(f"lmforge.{stage}.manifest_sha256", ref.manifest_sha256), RunTag(f"lmforge.{stage}.path", ref.path)]
    )
    for document in [Path(ref.path) / "manifest.json", *sorted(Path(ref.path).glob("*.md"))]:
        mlflow_client.log_artifact(run_id, str(document), artifact_path=f"stages/{stage}")


def close_run(cfg: TrackingConfig, run_id: str, status: str = "FINISHED") -> None:
    client(cfg).set_terminated(run_id, status=status)
