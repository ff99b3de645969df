"""The MLflow chat model: an lmforge checkpoint packaged as an OpenAI-compatible `mlflow.pyfunc.ChatModel`.

MLflow 3 deprecates `ChatModel` in favour of `ResponsesAgent` for agents, but keeps recommending it where strict
OpenAI ChatCompletion compatibility is needed — which is what `lmforge serve` and `mlflow models serve` expose.
The packaged model holds the checkpoint (weights, tokenizer, sidecar with the model config; never the optimizer
state) as an artifact and the `models`/`tasks` source as code, so `mlflow models serve -m models:/lmforge@champion
--env-manager local` runs it with nothing else on the path. `ChatEngine` is the generation logic shared by
`predict`, `predict_stream` and the chat server.
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

from models.chat import encode_chat, special_id

CHECKPOINT_FILES = ("model.safetensors", "sidecar.json", "tokenizer.json")
INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "What is Debian?"}], "max_tokens": 8, "temperature": 0.7}
DEFAULT_MAX_TOKENS = 128


class ChatEngine:
    """Chat generation over a loaded model: template, context budget, sampling, stop conditions, UTF-8-safe deltas."""

    def __init__(self, model: Any, tokenizer: Any, sidecar: dict[str, Any], name: str = "lmforge") -> None:
        self.model, self.tokenizer, self.sidecar, self.name = model, tokenizer, sidecar, name
        self.stop_ids = {special_id(tokenizer, "<|end|>"), tokenizer.eos_id, tokenizer.bos_id}
        self.context = int(getattr(model.config, "seq_len", 256))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path | str, device: str = "cpu", name: str = "lmforge") -> ChatEngine:
        from tasks.checkpoint import load_model

        model, tokenizer, sidecar = load_model(checkpoint_dir, device=device)
        return cls(model, tokenizer, sidecar, name)

    def prompt_ids(self, messages: list[dict[str, Any]], max_tokens: int) -> list[int]:
        ids, _ = encode_chat(self.tokenizer, messages, add_generation_prompt=True)
        budget = max(1, self.context - min(max_tokens, self.context // 2))
        return ids[-budget:]  # the oldest turns fall out of the window first

    def stream(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.7,
        top_k: int | None = 50,
        top_p: float | None = None,
        stop: list[str] | None = None,
    ) -> Iterator[tuple[str, str | None, int, int]]:
        """Yield (text delta, finish_reason or None, prompt tokens, completion tokens) as tokens are sampled."""
        import torch

        prompt = self.prompt_ids(messages, max_tokens)
        device = next(self.model.parameters()).device
        idx = torch.tensor([prompt], dtype=torch.long, device=device)
        generated: list[int] = []
        text = emitted = ""
        finish = "length"
        for _ in range(max_tokens):
            idx = self.model.generate(idx, 1, temperature=temperature, top_k=top_k, top_p=top_p)
            token = int(idx[0, -1])
            if token in self.stop_ids:
                finish = "stop"
                break
            generated.append(token)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            cut = min((text.find(s) for s in stop or [] if s and s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
                break
            safe = held_back(text, stop or [])
            if safe > len(emitted):
                delta, emitted = text[len(emitted) : safe], text[:safe]
                yield delta, None, len(prompt), len(generated)
            if idx.size(1) >= self.context:  # slide the window: drop the oldest tokens
                idx = idx[:, -(self.context - 1) :]
        text = text.rstrip("\ufffd")  # a character cut off by max_tokens is dropped, not sent half-decoded
        yield text[len(emitted) :] if text.startswith(emitted) else "", finish, len(prompt), len(generated)

    def complete(self, messages: list[dict[str, Any]], **sampling: Any) -> tuple[str, str, int, int]:
        """(answer, finish_reason, prompt tokens, completion tokens)."""
        parts, finish, n_prompt, n_out = [], "length", 0, 0
        for delta, finish_reason, n_prompt, n_out in self.stream(messages, **sampling):
            parts.append(delta)
            finish = finish_reason or finish
        return "".join(parts).strip(), finish, n_prompt, n_out


def held_back(text: str, stop: list[str]) -> int:
    """How much of `text` is safe to send: not a half-decoded multi-byte character, not the start of a stop string."""
    safe = len(text.rstrip("\ufffd"))
    for s in stop:
        for k in range(min(len(s) - 1, safe), 0, -1):
            if text[:safe].endswith(s[:k]):
                safe -= k
                break
    return safe


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
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.engine = ChatEngine.from_checkpoint(context.artifacts["checkpoint"], device=device)

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
    for name in CHECKPOINT_FILES:
        if not (checkpoint_dir / name).is_file():
            raise FileNotFoundError(f"{checkpoint_dir / name} missing: {checkpoint_dir} is not a complete checkpoint")
        shutil.copyfile(checkpoint_dir / name, dest / name)
    return dest


def stage_code(dest: Path) -> list[str]:
    """The `models` and `tasks` packages (Python files only), so the model loads without lmforge installed."""
    root = Path(__file__).resolve().parent.parent
    for package in ("models", "tasks"):
        for source in (root / package).glob("*.py"):
            (dest / package).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / package / source.name)
    return [str(dest / "models"), str(dest / "tasks")]


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
        code_paths=stage_code(workdir / "code"),
        pip_requirements=list(pip_requirements()),
        input_example=INPUT_EXAMPLE,
    )
    return Path(path)
