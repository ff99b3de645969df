"""The chat server: an OpenAI-compatible API over a registered model (`lmforge serve`).

`POST /v1/chat/completions` (non-streaming, and Server-Sent Events when `"stream": true`), `GET /v1/models` and
`GET /health`, answering from the checkpoint a registry alias points to (`models:/lmforge@champion`); `GET /` is a chat
page (`static/chat.html`, `static/chat.js`) that streams from the same API.

- Requests are validated before any generation (`schema`): a body over `max_request_bytes` is refused from its
  `Content-Length` before it is read; bad JSON, non-UTF-8 bytes, unknown fields, unsupported options, bad message
  shape, order or count are 4xx with an OpenAI `{"error": {...}}` body that names the field.
- Generation runs off the event loop (`scheduler`): one worker thread, a bounded FIFO queue; beyond it a request
  gets 429 with `Retry-After`. `/health` and `/v1/models` answer while a generation runs; a client that
  disconnects cancels its generation (queued: dropped; running: stops at the next token).
- Every answer passes an output filter (default: the PII scrubber from curation), also while streaming
  (`stream_filter`: a stream never sends the start of something it later redacts, and never drops text).
- An optional API key (`Authorization: Bearer …`) guards the `/v1` routes.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` type on the nested route functions.
import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tasks.core.tracking import TrackingConfig
from tasks.serve.config import ServeConfig
from tasks.serve.scheduler import Event, Job, QueueFull, Scheduler
from tasks.serve.schema import Parsed, RequestError, parse_request
from tasks.serve.stream_filter import StreamFilter

OutputFilter = Callable[[str], str]
log = logging.getLogger("lmforge.serve")


def pii_filter() -> OutputFilter:
    from tasks.core.pii import scrub_pii

    return lambda text: scrub_pii(text)[0]


def load_engine(cfg: ServeConfig, tracking: TrackingConfig | None = None):
    """A `ChatEngine` for `cfg.model_uri` (a registry URI or a checkpoint directory) on `cfg.device`.

    The registered pyfunc packages the checkpoint directory; it is downloaded and loaded directly (MLflow's
    ChatModel wrapper does not hand back the Python model object). An alias is resolved to its version once, so the
    version reported (`/health`, the chat page) is the one downloaded even if the alias moves meanwhile. The download
    is removed once the engine is built: the weights and tokenizer are read fully into memory.
    """
    import tempfile

    from models.inference.generate import ChatEngine
    from tasks.registry.resolve import registered_version, resolve_checkpoint

    tracking = tracking or TrackingConfig()
    source, version = cfg.model_uri, None
    if source.startswith("models:/"):
        name, version = registered_version(tracking, source)
        source = f"models:/{name}/{version}"
    with tempfile.TemporaryDirectory(prefix="lmforge-serve-") as tmp:
        checkpoint = resolve_checkpoint(source, Path(tmp), tracking)
        return ChatEngine.from_checkpoint(checkpoint, device=cfg.device, name=cfg.model_uri.removeprefix("models:/"),
                                          version=version, quantize=cfg.quantize)


def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
          headers: dict[str, str] | None = None):
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


class Guard:
    """ASGI middleware run before any body is read: API key on `/v1`, and `Content-Length` over the limit -> 413."""

    def __init__(self, app: Any, api_key: str | None, max_bytes: int) -> None:
        self.app, self.api_key, self.max_bytes = app, api_key, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            refusal = None
            # constant time: `==` stops at the first wrong byte, which leaks the key's prefix through timing
            authorised = hmac.compare_digest(headers.get(b"authorization", b""), f"Bearer {self.api_key}".encode())
            length = headers.get(b"content-length", b"0")
            if self.api_key and scope["path"].startswith("/v1/") and not authorised:
                refusal = error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                kind="authentication_error")
            elif not length.isdigit():
                refusal = error(400, f"Content-Length {length[:32]!r} is not a number")
            elif int(length) > self.max_bytes:
                refusal = error(413, f"request body is {int(length)} bytes; the limit is {self.max_bytes}")
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(request: Any, limit: int) -> bytes:
    """The body, read at most `limit` bytes far (a chunked upload has no Content-Length to check up front)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"request body is over the limit of {limit} bytes")
    return bytes(body)


def make_job(engine: Any, parsed: Parsed, output_filter: OutputFilter) -> Job:
    """The scheduler's job for a request: its `Sequence`, and the output side run in the worker thread (the filter:
    streamed text through `StreamFilter`, a plain answer filtered whole), ending with ("done", usage)."""
    stream = StreamFilter(output_filter) if parsed.stream else None
    raw: list[str] = []

    def output(delta: tuple[str, str | None, int, int]) -> list[Event]:
        text, finish, n_prompt, n_out = delta
        events: list[Event] = []
        if stream is None:
            raw.append(text)
        elif sent := stream.push(text):
            events.append(("delta", sent))
        if finish is not None:
            tail = stream.flush() if stream is not None else output_filter("".join(raw).strip())
            events += [("delta", tail)] if tail else []
            events.append(("done", (finish, n_prompt, n_out)))
        return events

    return Job(engine.sequence(parsed.messages, **parsed.sampling), output)


# The chat page (`GET /`): plain HTML and JS shipped in the package, no build step, nothing fetched from elsewhere.
PAGE_FILES = {"/": ("chat.html", "text/html; charset=utf-8"), "/chat.js": ("chat.js", "text/javascript; charset=utf-8")}
# Scripts only from this server (none inline), requests only to it: model text cannot become code even if mis-handled.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def static_file(filename: str, media_type: str) -> Callable[[], Any]:
    """A route answering the packaged `static/<filename>` (read once, at start-up)."""
    from importlib import resources

    from fastapi.responses import Response

    body = (resources.files("tasks.serve") / "static" / filename).read_bytes()

    async def page() -> Response:
        return Response(body, media_type=media_type, headers={"Content-Security-Policy": PAGE_POLICY,
                                                              "Cache-Control": "no-cache"})

    return page


def build_app(engine: Any, cfg: ServeConfig, output_filter: OutputFilter | None = None, api_key: str | None = None):
    """The FastAPI app; `api_key` defaults to the env var `cfg.api_key_env`."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    from starlette.exceptions import HTTPException

    api_key = api_key if api_key is not None else os.environ.get(cfg.api_key_env) or None
    if output_filter is None:
        output_filter = pii_filter() if cfg.output_filter == "pii" else (lambda text: text)
    scheduler = Scheduler(engine, cfg.max_queue, cfg.max_batch)

    @asynccontextmanager
    async def lifespan(_app):
        await scheduler.start()
        yield
        await scheduler.stop()

    app = FastAPI(title="lmforge chat", version="1", lifespan=lifespan)
    app.state.scheduler = scheduler
    app.add_middleware(Guard, api_key=api_key, max_bytes=cfg.max_request_bytes)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException):  # 404, 405, … in OpenAI's error shape
        return error(exc.status_code, str(exc.detail), kind="invalid_request_error")

    @app.exception_handler(Exception)
    async def server_error(_request: Request, exc: Exception):  # a bug: logged, and still an OpenAI error object
        log.exception("unhandled error", exc_info=exc)
        return error(500, f"internal error: {type(exc).__name__}", kind="server_error")

    for route, (filename, media_type) in PAGE_FILES.items():
        app.add_api_route(route, static_file(filename, media_type), methods=["GET"], include_in_schema=False)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = scheduler.stats
        return {"status": "ok", "model": engine.name, "version": engine.version, "step": engine.sidecar.get("step"),
                "running": len(scheduler.running),
                "waiting": len(scheduler.waiting), "completed": stats.completed, "cancelled": stats.cancelled,
                "failed": stats.failed, "rejected": stats.rejected, "peak_batch": stats.peak_batch}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": 0, "owned_by": "lmforge"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await read_body(request, cfg.max_request_bytes)
            parsed = parse_request(body, cfg.max_messages, cfg.max_tokens_limit, cfg.default_max_tokens)
            job = make_job(engine, parsed, output_filter)  # tokenises: context problems are 400s too
        except RequestError as err:
            return error(err.status, err.message, param=err.param)
        except ValueError as err:
            return error(400, str(err), param="messages")
        try:
            scheduler.submit(job)
        except QueueFull as full:
            busy = f"the server is busy ({cfg.max_queue} requests waiting); retry after {full.retry_after} s"
            return error(429, busy, kind="rate_limit_error", headers={"Retry-After": str(full.retry_after)})
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": engine.name}
        if parsed.stream:
            return StreamingResponse(sse_events(scheduler, job, meta, parsed.include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return await complete(request, scheduler, job, meta)

    return app


async def next_event(scheduler: Scheduler, job: Job, request: Any | None = None) -> Event:
    """The job's next event; with `request`, cancel the job when its client disconnects while waiting."""
    while True:
        try:
            return await asyncio.wait_for(job.events.get(), timeout=0.25 if request is not None else None)
        except TimeoutError:
            if await request.is_disconnected():
                scheduler.cancel(job)
                return "error", ConnectionAbortedError("client disconnected")


async def complete(request: Any, scheduler: Scheduler, job: Job, meta: dict[str, Any]):
    parts = []
    while True:
        kind, value = await next_event(scheduler, job, request)
        if kind == "delta":
            parts.append(value)
        elif kind == "error":
            return error(500, f"generation failed: {value}", kind="server_error")
        else:
            finish, n_prompt, n_out = value
            return {
                **meta, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                             "finish_reason": finish}],
                "usage": usage(n_prompt, n_out),
            }


def usage(n_prompt: int, n_out: int) -> dict[str, int]:
    return {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}


async def sse_events(scheduler: Scheduler, job: Job, meta: dict[str, Any], include_usage: bool) -> AsyncIterator[str]:
    """`data: {chunk}` lines as OpenAI sends them: a role chunk, content chunks, a finish chunk, with
    `stream_options.include_usage` a last chunk with empty `choices` and the usage, then `data: [DONE]`.
    Leaving this generator early (the client disconnected) cancels the generation."""
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        body = {**meta, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await next_event(scheduler, job)
            if kind == "delta":
                yield chunk({"content": value})
            elif kind == "error":
                body = {"error": {"message": f"generation failed: {value}", "type": "server_error", "code": 500}}
                yield f"data: {json.dumps(body)}\n\n"
                break
            else:
                finish, n_prompt, n_out = value
                yield chunk({}, finish)
                if include_usage:
                    last = {**meta, "object": "chat.completion.chunk", "choices": [], "usage": usage(n_prompt, n_out)}
                    yield f"data: {json.dumps(last)}\n\n"
                break
        yield "data: [DONE]\n\n"
    finally:
        scheduler.cancel(job)  # a no-op once the job finished


def serve(cfg: ServeConfig, tracking: TrackingConfig | None = None) -> None:
    """Load the model and serve until interrupted (what `lmforge serve` runs)."""
    import uvicorn

    uvicorn.run(build_app(load_engine(cfg, tracking), cfg), host=cfg.host, port=cfg.port, log_level="info")

