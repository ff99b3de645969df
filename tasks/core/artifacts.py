"""Run directories, manifests and the typed references passed between stages.

Every stage writes into a deterministic directory keyed by its name, its config, the manifests of its inputs and
the version of the code its entry function runs (`stage_dir`; `tasks.core.stage_code`). A stage is done when its
`manifest.json` exists: the manifest is written last, by `finish_stage`, after every other file is in place, and it
stores the stage's reference (`StageRef` subclass) so a rerun rebuilds it without redoing the work (`load_done`).
Stages pass these small refs, never data or models.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from models.weights.files import file_sha256, write_json_atomic  # one writer and hash for manifests and sidecars
from tasks.core.stage_code import code_version

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


def lmforge_home() -> Path:
    """Root of runs, the embedded MLflow store and Prefect's home: `$LMFORGE_HOME`, default `./.lmforge`."""
    return Path(os.environ.get("LMFORGE_HOME", ".lmforge")).resolve()


class StageRef(BaseModel):
    """What a finished stage hands to the next: where its output lives and the hash of its manifest."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="Stage directory holding the outputs and manifest.json.")
    manifest_sha256: str = Field(default="", description="sha256 of manifest.json; identifies the output exactly.")

    @property
    def dir(self) -> Path:
        return Path(self.path)

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.dir / MANIFEST).read_text())


class SourceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    sha256: str


class SourceRecord(BaseModel):
    """One source of a document mixture (the crawl, or a named local dataset): the lineage of its documents."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="The value of the documents' `source` column.")
    kind: str = Field(description="crawl, parquet or jsonl.")
    weight: float | None = Field(description="Bytes per byte of crawled text (None: every row; the crawl: 1).")
    documents: int
    bytes: int = Field(description="UTF-8 bytes of text taken.")
    license: str = "unknown"
    files: list[SourceFile] = Field(default_factory=list, description="Files read, with their sha256.")


class DocSet(StageRef):
    """Documents as Parquet files (crawl output: `tasks.core.schema.DOC_SCHEMA`)."""

    files: list[str] = Field(description="Parquet files, relative to `path`.")
    n_docs: int
    sources: list[SourceRecord] = Field(default_factory=list, description="The mixture's sources (mix stage and "
                                        "after); [] = the crawl alone.")


class ShardSet(StageRef):
    """Curated Parquet shards (`tasks.core.schema.SHARD_SCHEMA`), `shard_00000.parquet` …"""

    files: list[str] = Field(description="Parquet shards, relative to `path`.")
    n_docs: int
    n_bytes: int = Field(description="UTF-8 bytes of text over all shards.")
    sources: list[SourceRecord] = Field(default_factory=list, description="The mixture's sources; [] = the crawl.")


class TokenSet(StageRef):
    """A trained tokenizer and llm.c-format token shards split into train and val by document."""

    tokenizer_file: str = Field(description="tokenizer.json, relative to `path`.")
    vocab_size: int
    train_files: list[str]
    val_files: list[str]
    n_train_tokens: int
    n_val_tokens: int
    val_bytes: int = Field(description="UTF-8 bytes of the val documents, the bits-per-byte denominator.")


class CheckpointRef(StageRef):
    """A model checkpoint: safetensors weights + JSON sidecar (config, step, tokenizer hash, data hash)."""

    checkpoint: str = Field(description="Checkpoint directory, relative to `path`.")
    tokenizer_file: str = Field(description="Absolute path of the tokenizer.json the model was trained with.")
    step: int
    n_params: int
    tokens_seen: int
    train_seconds: float
    final_train_loss: float

    @classmethod
    def at(cls, checkpoint_dir: Path, *, step: int, n_params: int, tokens_seen: int = 0, train_seconds: float = 0.0,
           final_train_loss: float = float("nan"), manifest_sha256: str = "") -> CheckpointRef:
        """The ref of the checkpoint directory `checkpoint_dir` (a run's `step_…/`), its tokenizer the one inside."""
        from models.weights.checkpoint import TOKENIZER

        return cls(path=str(checkpoint_dir.parent), checkpoint=checkpoint_dir.name, manifest_sha256=manifest_sha256,
                   tokenizer_file=str((checkpoint_dir / TOKENIZER).resolve()), step=step, n_params=n_params,
                   tokens_seen=tokens_seen, train_seconds=round(train_seconds, 3), final_train_loss=final_train_loss)

    @classmethod
    def of_sidecar(cls, checkpoint_dir: Path, manifest_sha256: str) -> CheckpointRef:
        """The ref of a checkpoint directory with no stage manifest beside it, from its sidecar (which raises
        naming the path when it is no checkpoint): an exported or registered model, one `step_…` dir."""
        from models.weights.checkpoint import read_sidecar

        sidecar = read_sidecar(checkpoint_dir)
        return cls.at(checkpoint_dir, step=int(sidecar.get("step", 0)), n_params=int(sidecar.get("n_params", 0)),
                      tokens_seen=int(sidecar.get("tokens_seen", 0)), manifest_sha256=manifest_sha256)


class EvalReport(StageRef):
    """Evaluation results of one checkpoint."""

    metrics: dict[str, float] = Field(description="val_loss, val_ppl, val_bpb and downstream scores.")
    samples: list[str] = Field(default_factory=list, description="Sample generations for the fixed prompts.")


class ModelVersionRef(BaseModel):
    """A model version in the MLflow registry."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    alias: str = Field(description="Alias the version holds after the promotion gate (champion/challenger).")
    model_uri: str = Field(description="models:/<name>/<version>")
    run_id: str
    tracking_uri: str


R = TypeVar("R", bound=StageRef)


Entry = Callable[..., object]  # a stage's `run_…` function: where the code its cache key covers starts


def config_hash(stage: str, cfg: BaseModel, *inputs: StageRef, entry: Entry) -> str:
    """The stage's cache key: its config, its inputs' manifests and the code it runs, the module defining `entry`
    and what that imports (`tasks.core.stage_code`), so an edit to another stage's code keeps it."""
    payload = json.dumps(
        {
            "stage": stage,
            "config": cfg.model_dump(mode="json"),
            "inputs": [ref.manifest_sha256 for ref in inputs],
            "code": code_version(entry),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def stage_dir(stage: str, cfg: BaseModel, *inputs: StageRef, entry: Entry, home: Path | None = None) -> Path:
    """`<home>/runs/<stage>/<hash>/`: the same stage, config, inputs and code always map to the same directory."""
    out = (home or lmforge_home()) / "runs" / stage / config_hash(stage, cfg, *inputs, entry=entry)
    out.mkdir(parents=True, exist_ok=True)
    return out


def load_done(out: Path, ref_type: type[R]) -> R | None:
    """The ref of a finished stage in `out`, or None when the stage has not completed there."""
    manifest_path = out / MANIFEST
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text())
    ref = ref_type.model_validate({**manifest["ref"], "path": str(out)})
    return ref.model_copy(update={"manifest_sha256": file_sha256(manifest_path)})


def finish_stage(
    out: Path,
    ref: R,
    *,
    config: BaseModel | None = None,
    entry: Entry | None = None,
    stats: dict[str, Any] | None = None,
    files: list[str] | None = None,
    started: float | None = None,
) -> R:
    """Write `manifest.json` last (atomically) and return `ref` with the manifest's hash filled in.

    `files` (relative to `out`; default: the files the ref itself declares) are listed with size and sha256 so a
    reader can verify the output; a declared file that does not exist fails the stage. `entry` (the stage's `run_…`
    function, as given to `stage_dir`) records the version of the code that wrote the output.
    """
    if files is None:
        files = declared_files(ref)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "stage": out.parent.name,
        "ref": ref.model_dump(mode="json", exclude={"path", "manifest_sha256"}),
        "config": config.model_dump(mode="json") if config is not None else None,
        "stats": stats or {},
        "files": [
            {"path": name, "bytes": (out / name).stat().st_size, "sha256": file_sha256(out / name)}
            for name in (files or [])
        ],
        "code_version": code_version(entry) if entry is not None else None,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 3) if started is not None else None,
    }
    write_json_atomic(out / MANIFEST, manifest)
    return ref.model_copy(update={"path": str(out), "manifest_sha256": file_sha256(out / MANIFEST)})


def declared_files(ref: StageRef) -> list[str]:
    """Relative file paths a ref names in its `files`, `train_files`, `val_files` and `tokenizer_file` fields."""
    names: list[str] = []
    for field in ("files", "train_files", "val_files", "tokenizer_file"):
        value = getattr(ref, field, None)
        for name in [value] if isinstance(value, str) else value or []:
            if not Path(name).is_absolute():
                names.append(name)
    return names


def reset_dir(path: Path) -> Path:
    """Empty a directory left half-written by a killed run, so the stage restarts from a clean slate."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
