"""Helpers of the train stage: val loss over the held-out shards, the metric log (log.jsonl + MLflow batches),
memory readings."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tasks.core.tracking import TrackingConfig

Tracking = tuple[TrackingConfig, str] | None  # (where MLflow is, the pipeline run's id)


def evaluate_loss(model, files: list[Path], batch_size: int, seq_len: int, max_batches: int, device, amp) -> float:
    """Mean per-token cross-entropy (nats) over the first `max_batches` val batches."""
    import torch

    from tasks.core.tokens import iter_eval_batches

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in iter_eval_batches(files, batch_size, seq_len, max_batches):
            with amp:
                _, loss = model(x.to(device), y.to(device))
            total, count = total + loss.item() * y.numel(), count + y.numel()
    model.train()
    return total / count if count else float("nan")


class MetricLog:
    """Appends metrics to `log.jsonl` and sends them to MLflow in batches (when tracking is given)."""

    def __init__(self, tracking: Tracking, enabled: bool, history: Path):
        self.tracking, self.buffer = (tracking if enabled else None), []
        self.history = history if enabled else None

    def add(self, step: int, **values: float) -> None:
        if self.history is not None:  # log.jsonl: the run's curve next to its checkpoints, readable without MLflow
            with open(self.history, "a") as f:
                f.write(
                    json.dumps({"step": step, **{k.replace("__", "/"): float(v) for k, v in values.items()}}) + "\n"
                )
        if self.tracking:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.buffer += [Metric(k.replace("__", "/"), float(v), now, step) for k, v in values.items()]

    def tag(self, **values: object) -> None:
        """Tags on the MLflow run (e.g. world size: how many processes trained it)."""
        if self.tracking:
            from tasks.core.tracking import client

            cfg, run_id = self.tracking
            for key, value in values.items():
                client(cfg).set_tag(run_id, f"train.{key}", str(value))

    def flush(self) -> None:
        if self.tracking and self.buffer:
            from tasks.core.tracking import client

            cfg, run_id = self.tracking
            for start in range(0, len(self.buffer), 1000):
                client(cfg).log_batch(run_id, metrics=self.buffer[start : start + 1000])
            self.buffer = []


def max_rss_gib() -> float:
    """This process's peak resident memory so far (Linux reports KiB): the honest CPU figure; no per-step peak."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

