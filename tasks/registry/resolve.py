"""From a name a user types to a checkpoint on disk: registry URIs (`models:/name@alias`, `models:/name/N`),
train/SFT stage directories and checkpoint directories, for every command that starts from an existing model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tasks.core.artifacts import CheckpointRef, file_sha256, lmforge_home
from tasks.core.tracking import TrackingConfig


def registered_version(tracking: TrackingConfig, source: str) -> tuple[str, str]:
    """(name, version number) of the registered version `models:/name@alias` or `models:/name/N` names, asked of our
    own registry client (not MLflow's process-wide registry URI, which would leak into every later MLflow call in
    the process)."""
    from tasks.core.tracking import client

    name_and_version = source.removeprefix("models:/")
    if "@" in name_and_version:
        name, alias = name_and_version.split("@", 1)
        return name, client(tracking).get_model_version_by_alias(name, alias).version
    if "/" in name_and_version:
        name, version = name_and_version.split("/", 1)
        return name, version
    raise ValueError(f"{source}: expected models:/<name>@<alias> or models:/<name>/<version>")


def registered_artifacts(tracking: TrackingConfig, source: str) -> str:
    """Where the registered version `source` (`models:/name@alias` or `models:/name/N`) keeps its files."""
    from tasks.core.tracking import client

    name, version = registered_version(tracking, source)
    return client(tracking).get_model_version_download_uri(name, version)


def resolve_checkpoint(source: str, tmp: Path, tracking: TrackingConfig | None = None) -> Path:
    """The checkpoint directory `source` names (downloading a registered model into `tmp`)."""
    from models.weights import checkpoint as ckpt

    if source.startswith("models:/"):
        import mlflow

        tracking = tracking or TrackingConfig()
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=registered_artifacts(tracking, source), dst_path=str(tmp), tracking_uri=tracking.uri()
        )
        found = Path(local) / "artifacts" / "checkpoint"
        if not (found / ckpt.SIDECAR).is_file():
            raise FileNotFoundError(f"{source} holds no lmforge checkpoint (artifacts/checkpoint); was it registered "
                                    "by lmforge's register stage?")
        return found
    path = Path(source)
    manifest = path / "manifest.json"
    if manifest.is_file():  # a train or SFT stage dir: its ref names the final checkpoint
        return path / json.loads(manifest.read_text())["ref"]["checkpoint"]
    if not (path / ckpt.SIDECAR).is_file():
        raise FileNotFoundError(f"export source {source}: not a checkpoint dir, a stage dir or a models:/ URI")
    return path


def base_ref(base: str, tracking: TrackingConfig) -> CheckpointRef:
    """The base as a CheckpointRef: a checkpoint directory, or a registered model fetched into
    `$LMFORGE_HOME/bases/`; its weights' sha256 keys the stage directories built on it."""
    from models.weights.checkpoint import WEIGHTS

    dest = lmforge_home() / "bases" / hashlib.sha256(base.encode()).hexdigest()[:16]
    path = resolve_checkpoint(base, dest, tracking)
    return CheckpointRef.of_sidecar(path, manifest_sha256=file_sha256(path / WEIGHTS))
