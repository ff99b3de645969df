"""The chat server: an OpenAI-compatible API over a registered model (`lmforge serve`).

`POST /v1/chat/completions` (non-streaming, and Server-Sent Events when `"stream": true`), `GET /v1/models` and
`GET /health`, answering from the pyfunc chat model a registry alias points to (`models:/lmforge@champion`).
Requests are validated before any generation: body size, JSON syntax, message shape and count, `max_tokens`
bound; failures are 4xx with an OpenAI-style `{"error": {...}}` body that names the field. An optional API key
(`Authorization: Bearer …`) guards the `/v1` routes. Every answer passes an output filter (default: the PII
scrubber from curation), also while streaming: the filter runs on the text so far and a tail is held back so a
phone number or e-mail address split across tokens is still caught.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` type on the nested route functions.
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.core.tracking import TrackingConfig

OutputFilter = Callable[[str], str]
HOLD_BACK_CHARS = 48  # longer than any PII span the scrubber matches across a token boundary


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_uri: str = Field(default="models:/lmforge@champion", description="Registry alias or any MLflow model URI.")
    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0 exposes it).")
    port: int = Field(default=8000, description="TCP port.")
    api_key_env: str = Field(default="LMFORGE_API_KEY", description="Env var holding the API key; unset = no key.")
    max_request_bytes: int = Field(default=65536, ge=1024, description="Largest request body accepted (413 above).")
    max_messages: int = Field(default=64, ge=1, description="Most messages per request.")
    max_tokens_limit: int = Field(default=512, ge=1, description="Upper bound on a request's max_tokens.")
    default_max_tokens: int = Field(default=128, ge=1, description="max_tokens when the request gives none.")
    output_filter: Literal["pii", "none"] = Field(default="pii", description="Filter applied to every answer.")


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=32768)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (user, n=1, …)
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=50, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False


def pii_filter() -> OutputFilter:
    from tasks.core.pii import scrub_pii

    return lambda text: scrub_pii(text)[0]


def load_engine(cfg: ServeConfig, tracking: TrackingConfig | None = None):
    """A `ChatEngine` for `cfg.model_uri` (a registry URI or a checkpoint directory).

    The registered pyfunc packages the checkpoint directory; it is downloaded and loaded directly (MLflow's
    ChatModel wrapper does not hand back the Python model object).
    """
    import tempfile

    from models.generate import ChatEngine
    from tasks.registry.resolve import resolve_checkpoint

    workdir = Path(tempfile.mkdtemp(prefix="lmforge-serve-"))
    checkpoint = resolve_checkpoint(cfg.model_uri, workdir, tracking or TrackingConfig())
    return ChatEngine.from_checkpoint(checkpoint, name=cfg.model_uri.removeprefix("models:/"))


def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status_code=status)


def filtered_stream(deltas: Iterator[str], output_filter: OutputFilter) -> Iterator[str]:
    """Filter a stream of text deltas: re-filter the text so far, send what is settled, hold back a tail."""
    raw, sent = "", ""
    for delta in deltas:
        raw += delta
        clean = output_filter(raw)
        settled = clean[: max(0, len(clean) - HOLD_BACK_CHARS)]
        if settled.startswith(sent) and len(settled) > len(sent):
            yield settled[len(sent) :]
            sent = settled
    clean = output_filter(raw)
    if clean.startswith(sent) and len(clean) > len(sent):
        yield clean[len(sent) :]


def build_app(engine: Any, cfg: ServeConfig, output_filter: OutputFilter | None = None, api_key: str | None = None):
    """The FastAPI app; `api_key` defaults to the env var `cfg.api_key_env`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    api_key = api_key if api_key is not None else os.environ.get(cfg.api_key_env) or None
    if output_filter is None:
        output_filter = pii_filter() if cfg.output_filter == "pii" else (lambda text: text)
    lock = threading.Lock()  # one generation at a time: the model's CPU threads are the bottleneck anyway
    app = FastAPI(title="lmforge chat", version="1")

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        authorised = request.headers.get("authorization", "") == f"Bearer {api_key}"
        if api_key and request.url.path.startswith("/v1/") and not authorised:
            return error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", kind="authentication_error")
        return await call_next(request)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": engine.name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": 0, "owned_by": "lmforge"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.body()
        if len(body) > cfg.max_request_bytes:
            return error(413, f"request body is {len(body)} bytes; the limit is {cfg.max_request_bytes}")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return error(400, f"request body is not valid JSON: {err}")
        try:
            req = ChatRequest.model_validate(payload)
        except ValidationError as err:
            first = err.errors()[0]
            param = ".".join(str(p) for p in first["loc"])
            return error(400, f"{param}: {first['msg']}", param=param)
        if len(req.messages) > cfg.max_messages:
            return error(400, f"{len(req.messages)} messages; the limit is {cfg.max_messages}", param="messages")
        max_tokens = req.max_completion_tokens or req.max_tokens or cfg.default_max_tokens
        if max_tokens > cfg.max_tokens_limit:
            return error(400, f"max_tokens {max_tokens} exceeds the limit {cfg.max_tokens_limit}", param="max_tokens")
        messages = [m.model_dump() for m in req.messages]
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        sampling = {"max_tokens": max_tokens, "temperature": req.temperature, "top_k": req.top_k, "top_p": req.top_p,
                    "stop": stop}
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": engine.name}
        if req.stream:
            return StreamingResponse(sse_events(engine, lock, messages, sampling, output_filter, meta),
                                     media_type="text/event-stream")
        with lock:
            text, finish, n_prompt, n_out = engine.complete(messages, **sampling)
        return {
            **meta, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": output_filter(text)},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out},
        }

    return app


def sse_events(engine: Any, lock: threading.Lock, messages: list[dict[str, str]], sampling: dict[str, Any],
               output_filter: OutputFilter, meta: dict[str, Any]) -> Iterator[str]:
    """`data: {chunk}` lines as OpenAI sends them: a role chunk, content chunks, a finish chunk, `data: [DONE]`."""

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        body = {**meta, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    finish = ["length"]

    def deltas() -> Iterator[str]:
        for delta, finish_reason, _, _ in engine.stream(messages, **sampling):
            finish[0] = finish_reason or finish[0]
            if delta:
                yield delta

    with lock:
        for text in filtered_stream(deltas(), output_filter):
            yield chunk({"content": text})
    yield chunk({}, finish[0])
    yield "data: [DONE]\n\n"


def serve(cfg: ServeConfig, tracking: TrackingConfig | None = None) -> None:
    """Load the model and serve until interrupted (what `lmforge serve` runs)."""
    import uvicorn

    uvicorn.run(build_app(load_engine(cfg, tracking), cfg), host=cfg.host, port=cfg.port, log_level="info")


def echo(text: str) -> None:
    print(text, end="", flush=True)


def chat_repl(engine: Any, read: Callable[[str], str] = input, write: Callable[[str], None] = echo,
              system: str | None = None, max_tokens: int = 128, temperature: float = 0.7) -> list[dict[str, str]]:
    """A terminal conversation (`lmforge chat`): answers stream as they are sampled; `/reset` clears, `/exit` ends."""
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if line in {"/exit", "/quit"}:
            break
        if line == "/reset":
            history = history[:1] if system else []
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        parts = []
        for delta, _, _, _ in engine.stream(history, max_tokens=max_tokens, temperature=temperature):
            parts.append(delta)
            write(delta)
        write("\n")
        history.append({"role": "assistant", "content": "".join(parts).strip()})
    return history
