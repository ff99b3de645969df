"""Ask a registered model a few questions, as a user of `lmforge serve` would: the end of the demo.

Each question is one user turn in the model's own chat template, answered greedily (temperature 0, so the printed
answers are reproducible) through the same `ChatEngine` the server runs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from prefect import task

from tasks.core.tracking import TrackingConfig


def run_ask(model_uri: str, questions: list[str], tracking: TrackingConfig, max_tokens: int = 96) -> list[tuple[str, str]]:
    """[(question, answer)] from the model at `model_uri` (a registry URI or a checkpoint directory)."""
    from models.inference.generate import ChatEngine
    from tasks.registry.resolve import resolve_checkpoint

    workdir = Path(tempfile.mkdtemp(prefix="lmforge-ask-"))
    try:
        engine = ChatEngine.from_checkpoint(resolve_checkpoint(model_uri, workdir, tracking), device="auto")
        return [(q, engine.complete([{"role": "user", "content": q}], max_tokens=max_tokens, temperature=0.0)[0])
                for q in questions]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@task(name="ask")
def ask(model_uri: str, questions: list[str], tracking: TrackingConfig) -> list[tuple[str, str]]:
    return run_ask(model_uri, questions, tracking)
