"""Classify stage: fine-tune a pretrained lmforge model for text classification, score it, register it in MLflow.

Data are JSONL or Parquet rows `{text, label}` with any number of labels (strings or numbers; the label set is the
sorted set of training labels). Without `val_file`, a deterministic `val_fraction` of the training rows (by text
hash) is held out. The head (`models.inference.classifier`) pools the base's final hidden states (mean or last token);
base and head train together with AdamW unless `freeze_base`, on the training kernel (`tasks.train.loop`: a constant lr,
the NaN/inf guard and, with `checkpoint_every`, checkpoints under `checkpoints/` (the last one kept) and an exact
resume after a kill). Metrics on the val split: accuracy, macro-F1 (the mean of
per-label F1 over every label, a label never predicted nor present scoring 0) and the confusion matrix (rows = true
label, columns = predicted), saved as `metrics.json` and `confusion.png`. `register_classifier` logs them to MLflow
and registers the pyfunc (`LmforgeClassifier`: texts in, labels and probabilities out) through
`tasks.registry.register.run_register`, whose gate decides the alias on `cls_macro_f1` over the same val set.
`finetune_classify` is the whole thing for `lmforge finetune --task classify`.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.artifacts import (
    CheckpointRef,
    EvalReport,
    ModelVersionRef,
    StageRef,
    file_sha256,
    finish_stage,
    load_done,
    stage_dir,
)
from tasks.core.tracking import TrackingConfig
from tasks.finetune.classify_metrics import classification_metrics, confusion_matrix, plot_confusion
from tasks.finetune.records import read_records
from tasks.registry.register import RegisterConfig

CLASSIFIER_DIR = "classifier"
CHECKPOINTS = "checkpoints"  # the training checkpoints a killed run resumes from (with checkpoint_every)


class ClassifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str = Field(
        default="models:/lmforge@champion", description="Pretrained base: checkpoint dir or models:/ URI."
    )
    train_file: str = Field(default="", description="Training rows {text, label}, .jsonl or .parquet.")
    val_file: str | None = Field(default=None, description="Validation rows; None = hold out val_fraction of train.")
    val_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of train rows held out without val_file.")
    pooling: Literal["mean", "last"] = Field(default="mean", description="Pool hidden states by mean or last token.")
    max_len: int = Field(default=128, ge=2, description="Tokens per text (with <|bos|>); longer texts are cut.")
    epochs: int = Field(default=3, ge=1, description="Passes over the training rows.")
    batch_size: int = Field(default=16, ge=1, description="Texts per optimizer step.")
    lr: float = Field(default=3e-4, gt=0, description="AdamW learning rate of the base.")
    head_lr: float = Field(default=3e-3, gt=0, description="AdamW learning rate of the classification head.")
    weight_decay: float = Field(default=0.01, ge=0, description="Decoupled weight decay.")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on the pooled features.")
    freeze_base: bool = Field(default=False, description="Train the head only (a linear probe).")
    checkpoint_every: int = Field(default=0, ge=0, description="Save every N steps and the last, so a killed run "
                                  "resumes (0 = never: a killed run starts over).")
    seed: int = Field(default=1337, description="Seed of the split, the head init and the batch order.")
    device: str = Field(default="auto", description="torch device; auto = cuda when available, else cpu.")
    model_name: str = Field(default="lmforge-classifier", description="Registered model name in MLflow.")


class ClassifierRef(StageRef):
    """A fine-tuned classifier directory and its val metrics."""

    classifier: str = Field(description="Classifier directory, relative to `path`.")
    labels: list[str] = Field(description="Label names, in the head's output order.")
    metrics: dict[str, float] = Field(description="cls_accuracy, cls_macro_f1, cls_f1_<label>, cls_n.")
    val_set: str = Field(description="Fingerprint of the val rows and labels: the gate compares only on equal sets.")


def read_examples(path: Path | str) -> list[tuple[str, Any]]:
    """(text, label) rows of a JSONL or Parquet file."""
    rows = read_records(path, "classify data file")
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("text"), str) or row.get("label") is None:
            raise ValueError(f"{path}: row {n} needs a string 'text' and a 'label'; got keys {sorted(row)}")
    return [(row["text"], row["label"]) for row in rows]


def split_rows(cfg: ClassifyConfig) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    rows = read_examples(cfg.train_file)
    if cfg.val_file:
        return rows, read_examples(cfg.val_file)

    def held_out(text: str) -> bool:  # by text hash: the same rows are held out whatever the file order
        digest = hashlib.sha256(f"{cfg.seed}:{text}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < cfg.val_fraction

    train = [r for r in rows if not held_out(r[0])]
    val = [r for r in rows if held_out(r[0])]
    if not train or not val:
        raise ValueError(f"{cfg.train_file}: {len(rows)} rows give an empty train or val split; add rows or a val_file")
    return train, val


class ExampleBatches:
    """The classifier's batch source: epochs over the training rows, each in an order `random.Random(seed)` shuffles
    anew (the last batch of an epoch may be short); its position is the generator's state and the place in the
    epoch."""

    def __init__(self, n_rows: int, batch_size: int, seed: int):
        self.rng, self.order, self.batch_size = random.Random(seed), list(range(n_rows)), batch_size
        self.pos = n_rows  # the first batch shuffles

    def next_batch(self) -> list[int]:
        if self.pos >= len(self.order):
            self.rng.shuffle(self.order)
            self.pos = 0
        rows = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return rows

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss], "order": list(self.order), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.order, self.pos = list(state["order"]), state["pos"]


def run_classify(cfg: ClassifyConfig, base: CheckpointRef, out: Path) -> ClassifierRef:
    import torch

    from models.hardware.devices import resolve_device
    from models.inference.classifier import SequenceClassifier, encode_batch, predict_proba, save_classifier
    from models.optimisation.muon import OptimizerSpec, build_optimizers
    from models.weights import checkpoint as ckpt
    from tasks.train.loop import TrainLoop, load_resumed
    from tasks.train.schedule import Schedule

    t0 = time.time()
    device = resolve_device(cfg.device)
    train, val = split_rows(cfg)
    label_values = sorted({label for _, label in train}, key=lambda v: (type(v).__name__, v))
    unknown = {label for _, label in val} - set(label_values)
    if unknown:
        raise ValueError(f"val labels {sorted(map(str, unknown))} never occur in {cfg.train_file}; add training rows")
    index = {label: i for i, label in enumerate(label_values)}
    labels = [str(v) for v in label_values]
    out.mkdir(parents=True, exist_ok=True)
    steps_dir = out / CHECKPOINTS
    ckpt.clear_staging(steps_dir)  # half-written checkpoints of a killed run
    resume = ckpt.latest_checkpoint(steps_dir)
    torch.manual_seed(cfg.seed)
    lm, tokenizer, sidecar = ckpt.load_model(base.dir / base.checkpoint, device="cpu")
    max_len = min(cfg.max_len, int(getattr(lm.config, "seq_len", cfg.max_len)))
    model = SequenceClassifier(lm, len(labels), cfg.pooling, cfg.dropout)
    load_resumed(model, resume, lora=False)
    model.to(device)
    if cfg.freeze_base:
        model.base.requires_grad_(False)

    def loss(rows: list[int]):
        batch = [train[i] for i in rows]
        idx, lengths = encode_batch(tokenizer, [text for text, _ in batch], max_len)
        target = torch.tensor([index[label] for _, label in batch], device=device)
        return torch.nn.functional.cross_entropy(model(idx.to(device), lengths.to(device)), target), int(lengths.sum())

    # one AdamW (betas of torch's default, as the head always trained with): the base at lr, the head at head_lr
    spec = OptimizerSpec("adamw", cfg.lr, cfg.weight_decay, (0.9, 0.999), prefix_lrs=(("head.", cfg.head_lr),))
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    loop = TrainLoop(model, build_optimizers(model, spec), Schedule(steps, shape="constant"),
                     ExampleBatches(len(train), cfg.batch_size, cfg.seed), loss, steps_dir, device=device,
                     grad_clip=0.0, name="classify", advice="lower classify.lr and classify.head_lr")
    losses = {}  # the first and last step's loss, kept across a resume in the checkpoint sidecar
    if resume is not None:
        loop.restore(resume)
        losses = ckpt.read_sidecar(resume)["metrics"]
    model.train()

    def record(log) -> None:
        losses.setdefault("first_loss", log.loss)
        losses["last_loss"] = log.loss

    def save() -> Path | None:
        return loop.save({"classify": cfg.model_dump(mode="json"), "metrics": losses},
                         base.dir / base.checkpoint / ckpt.TOKENIZER, keep_last=1)

    loop.fit(on_step=record, save=save, checkpoint_every=cfg.checkpoint_every)
    if cfg.checkpoint_every and loop.saved_step != loop.state.step:
        save()
    model.eval()
    predicted = predict_proba(model, tokenizer, [text for text, _ in val], max_len).argmax(-1).tolist()
    matrix = confusion_matrix([index[label] for _, label in val], predicted, len(labels))
    metrics = classification_metrics(matrix, labels)
    meta = {
        "model": lm.config.model_dump(mode="json"),
        "labels": label_values,
        "pooling": cfg.pooling,
        "max_len": max_len,
        "base": {"checkpoint": str(base.dir / base.checkpoint), "step": sidecar.get("step")},
    }
    save_classifier(model, meta, base.dir / base.checkpoint / ckpt.TOKENIZER, out / CLASSIFIER_DIR)
    (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "labels": labels, "confusion": matrix}, indent=2))
    plot_confusion(matrix, labels, out / "confusion.png")
    files = ["metrics.json", "confusion.png"] + [f"{CLASSIFIER_DIR}/{p.name}" for p in (out / CLASSIFIER_DIR).iterdir()]
    stats = {
        **metrics,
        "train_rows": len(train),
        "val_rows": len(val),
        "first_loss": losses["first_loss"],
        "last_loss": losses["last_loss"],
        "train_seconds": time.time() - t0,
    }
    val_set = hashlib.sha256(json.dumps([[t, str(label)] for t, label in val] + [labels]).encode()).hexdigest()[:16]
    ref = ClassifierRef(path=str(out), classifier=CLASSIFIER_DIR, labels=labels, metrics=metrics, val_set=val_set)
    return finish_stage(out, ref, config=cfg, entry=run_classify, stats=stats, files=files, started=t0)


def classifier_registry_config(cfg: ClassifyConfig) -> RegisterConfig:
    """The classifier's gate: macro-F1 on the same val rows must improve; no downstream guards, and no re-scoring of
    a champion scored on other rows (re-scoring evaluates language models)."""
    return RegisterConfig(
        model_name=cfg.model_name, gate_metric="cls_macro_f1", guard_metrics=[], rescore_champion=False,
        intended_use="Text classification into the labels it was trained on, for texts like its training rows.",
    )


def register_classifier(
    cfg: ClassifyConfig, tracking: TrackingConfig, run_id: str, ref: ClassifierRef, base: CheckpointRef
) -> ModelVersionRef:
    """Log metrics and the confusion-matrix plot to `run_id`, then register the pyfunc through the registry's one
    path (`tasks.registry.register.run_register`: gate, promotion lock, compare-and-set, idempotence); `base` is the
    checkpoint the classifier was fine-tuned from."""
    from tasks.core.tracking import client, log_stage
    from tasks.registry.register import ModelPackage, run_register

    mlflow_client = client(tracking)
    log_stage(tracking, run_id, "classify", ref)  # metrics and timings as classify/..., the manifest as an artifact
    mlflow_client.log_artifact(run_id, str(ref.dir / "confusion.png"), artifact_path="classify")
    mlflow_client.log_artifact(run_id, str(ref.dir / "metrics.json"), artifact_path="classify")
    summary = (f"Text classifier: a {cfg.pooling}-pooled head over the checkpoint described below, labels "
               f"{', '.join(ref.labels)}; val accuracy {ref.metrics['cls_accuracy']:.4f}, macro-F1 "
               f"{ref.metrics['cls_macro_f1']:.4f} on {int(ref.metrics['cls_n'])} rows.")
    package = ModelPackage(kind="classifier", source=str(ref.dir / ref.classifier), summary=summary)
    with tempfile.TemporaryDirectory(prefix="lmforge-classifier-report-") as tmp:
        # the gate reads an eval report (report.json: metrics and the eval set each was measured on); the classifier's
        # is its val split, and the stage's manifest identifies it, so a rerun finds the version it registered
        (Path(tmp) / "report.json").write_text(json.dumps({"metrics": ref.metrics, "eval_sets": {"cls": ref.val_set}}))
        report = EvalReport(path=tmp, metrics=ref.metrics, manifest_sha256=ref.manifest_sha256)
        return run_register(classifier_registry_config(cfg), tracking, run_id, base, report, package=package)


def data_ref(cfg: ClassifyConfig) -> StageRef:
    """The data files as a stage input, so an edited file gets a new stage directory."""
    digest = "".join(file_sha256(Path(p)) for p in (cfg.train_file, cfg.val_file) if p)
    return StageRef(path=cfg.train_file, manifest_sha256=hashlib.sha256(digest.encode()).hexdigest())


@task(name="classify", retries=1)
def classify(cfg: ClassifyConfig, base: CheckpointRef) -> ClassifierRef:
    out = stage_dir("classify", cfg, base, data_ref(cfg), entry=run_classify)
    return load_done(out, ClassifierRef) or run_classify(cfg, base, out)
