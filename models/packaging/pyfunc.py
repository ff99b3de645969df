"""The MLflow models: an lmforge checkpoint packaged as an OpenAI-compatible `mlflow.pyfunc.ChatModel`, and a
fine-tuned classifier packaged as `models.packaging.classifier_entry.LmforgeClassifier` (texts in, labels out).

MLflow 3 deprecates `ChatModel` in favour of `ResponsesAgent` for agents, but keeps recommending it where strict
OpenAI ChatCompletion compatibility is needed — which is what `lmforge serve` and `mlflow models serve` expose.
The packaged model holds the checkpoint (weights, tokenizer, sidecar with the model config; never the optimizer
state) as an artifact and the `models` source as code (nothing from `tasks/`), so `mlflow models serve -m
models:/lmforge@champion --env-manager local` runs it with nothing else on the path. Generation itself is
`models.inference.generate.ChatEngine`, shared with the chat server and the CLI chat. Both models are models-from-code
(`pyfunc_entry.py`, `classifier_entry.py`: no pickle stored) and carry the same code (`package_code`).
"""

from __future__ import annotations

import functools
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
from mlflow.types.llm import (
    ChatChoice,
    ChatChoiceDelta,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatMessage,
    ChatParams,
    TokenUsageStats,
)

import models
from models.inference.generate import DEFAULT_MAX_TOKENS, ChatEngine
from models.text.tokenizer import Tokenizer
from models.weights.checkpoint import SERVING_FILES, TOKENIZER

INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "What is Debian?"}], "max_tokens": 8, "temperature": 0.7}


def sampling_from(params: ChatParams | None) -> dict[str, Any]:
    params = params or ChatParams()
    return {
        "max_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
        "temperature": 0.7 if params.temperature is None else params.temperature,
        "top_k": params.top_k,
        "top_p": params.top_p,
        "stop": params.stop,
    }


class LmforgeChatModel(mlflow.pyfunc.ChatModel):
    """The registered model: `predict` answers a conversation, `predict_stream` yields chunks."""

    def load_context(self, context) -> None:
        self.engine = ChatEngine.from_checkpoint(context.artifacts["checkpoint"], device="auto")

    def predict(self, context, messages: list[ChatMessage], params: ChatParams) -> ChatCompletionResponse:
        history = [{"role": m.role, "content": m.content or ""} for m in messages]
        text, finish, n_prompt, n_out = self.engine.complete(history, **sampling_from(params))
        return ChatCompletionResponse(
            choices=[ChatChoice(message=ChatMessage(role="assistant", content=text), finish_reason=finish)],
            usage=TokenUsageStats(prompt_tokens=n_prompt, completion_tokens=n_out, total_tokens=n_prompt + n_out),
            id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
            model=self.engine.name,
        )

    def predict_stream(self, context, messages: list[ChatMessage], params: ChatParams) -> Iterator[ChatCompletionChunk]:
        history = [{"role": m.role, "content": m.content or ""} for m in messages]
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        for delta, finish, _, _ in self.engine.stream(history, **sampling_from(params)):
            choice = ChatChunkChoice(delta=ChatChoiceDelta(role="assistant", content=delta), finish_reason=finish)
            yield ChatCompletionChunk(choices=[choice], id=chunk_id, model=self.engine.name, created=created)


def stage_checkpoint(checkpoint_dir: Path, dest: Path) -> Path:
    """Copy what serving needs (weights, tokenizer, sidecar) out of a training checkpoint, leaving optimizer state."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SERVING_FILES:
        if not (checkpoint_dir / name).is_file():
            raise FileNotFoundError(f"{checkpoint_dir / name} missing: {checkpoint_dir} is not a complete checkpoint")
        shutil.copyfile(checkpoint_dir / name, dest / name)
    for path in Tokenizer.files(checkpoint_dir / TOKENIZER)[1:]:  # a base model's tokenizer spec
        shutil.copyfile(path, dest / path.name)
    return dest


def package_code(dest: Path) -> list[str]:
    """The whole `models` package tree (its Python files, every subpackage): all a registered model needs to load,
    with no stage code. The tree rather than the modules the entry point imports, because some are imported by name
    at load time (`ARCHS`' "module:Class" strings)."""
    source = Path(models.__file__).resolve().parent
    for path in source.rglob("*.py"):
        target = dest / "models" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return [str(dest / "models")]


@functools.cache  # reading package metadata costs ~0.7 s
def pip_requirements() -> tuple[str, ...]:
    import importlib.metadata as md

    names = ["mlflow", "torch", "tokenizers", "safetensors", "numpy", "pydantic"]
    return tuple(f"{name}=={md.version(name).split('+')[0]}" for name in names)


def save_chat_model(checkpoint_dir: Path | str, path: Path | str, workdir: Path | str) -> Path:
    """Write the pyfunc chat model for `checkpoint_dir` to `path` (must not exist); `workdir` holds staging copies."""
    workdir = Path(workdir)
    checkpoint = stage_checkpoint(Path(checkpoint_dir), workdir / "checkpoint")
    mlflow.pyfunc.save_model(
        path=str(path),
        python_model=str(Path(__file__).with_name("pyfunc_entry.py")),  # models-from-code: no pickle stored
        artifacts={"checkpoint": str(checkpoint)},
        code_paths=package_code(workdir / "code"),
        pip_requirements=list(pip_requirements()),
        input_example=INPUT_EXAMPLE,
    )
    return Path(path)


def save_classifier_model(classifier_dir: Path | str, path: Path | str, workdir: Path | str) -> Path:
    """Write the pyfunc classifier for `classifier_dir` (`models.inference.classifier.save_classifier`'s output) to
    `path` (must not exist); `workdir` holds the staged code."""
    import pandas as pd

    mlflow.pyfunc.save_model(
        path=str(path),
        python_model=str(Path(__file__).with_name("classifier_entry.py")),
        artifacts={"classifier": str(classifier_dir)},
        code_paths=package_code(Path(workdir) / "code"),
        pip_requirements=list(pip_requirements()),
        input_example=pd.DataFrame({"text": ["an example text to classify"]}),
    )
    return Path(path)
