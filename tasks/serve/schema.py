"""The request side of the OpenAI chat-completions API: parsing a body into a `ChatRequest`, or a `RequestError`
(status, message naming the field and the fix, OpenAI `param`) — every malformed request is a 4xx, never a 5xx.

Follows OpenAI where it is clear: `content` is a string or a list of `{"type": "text", "text": ...}` parts; unknown
top-level fields are refused ("Unrecognized request argument supplied"); fields OpenAI defines but this server does
not implement are accepted at their no-op values and refused otherwise (`n` > 1, tools, logprobs, penalties, …);
`stream_options` only with `stream`. Where OpenAI is lenient and the model's chat template is not (a system message
after the conversation started: the model was only trained with one first), the request is refused like vLLM's
strict templates do, with a 400 that says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_STOP_SEQUENCES = 4  # OpenAI's limit


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None  # OpenAI's participant name; accepted, not shown to the model

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: int | None = Field(default=50, ge=1)  # not OpenAI; vLLM and llama.cpp accept it
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)  # what torch.Generator.manual_seed takes
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    # OpenAI fields this server does not implement: accepted only at values that change nothing
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


# field -> (is this value a no-op?, what to say otherwise)
UNSUPPORTED = {
    "n": (lambda v: v == 1, "only n=1 is supported; send n requests for n answers"),
    "frequency_penalty": (lambda v: not v, "frequency_penalty is not supported; leave it out or send 0"),
    "presence_penalty": (lambda v: not v, "presence_penalty is not supported; leave it out or send 0"),
    "logit_bias": (lambda v: not v, "logit_bias is not supported"),
    "logprobs": (lambda v: not v, "logprobs are not supported"),
    "top_logprobs": (lambda v: v is None, "top_logprobs is not supported"),
    "response_format": (lambda v: not v or v.get("type") == "text", "only response_format type 'text' is supported"),
    "tools": (lambda v: not v, "tools are not supported by this model"),
    "tool_choice": (lambda v: v in (None, "none"), "tool_choice is not supported; this model has no tools"),
}


@dataclass
class Parsed:
    """A valid request in the engine's terms."""

    messages: list[dict[str, str]]
    sampling: dict[str, Any]
    stream: bool
    include_usage: bool


def validation_error(err: ValidationError) -> RequestError:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    param = ".".join(loc)
    if first["type"] == "extra_forbidden":
        where = "request argument" if len(loc) == 1 else "field"
        return RequestError(400, f"Unrecognized {where} supplied: {param}", param=param)
    return RequestError(400, f"{param}: {first['msg']}", param=param)


class NotJSON(ValueError):
    pass


def not_json(name: str) -> Any:
    raise NotJSON(f"{name} is not a JSON value (Python's json module accepts it, the JSON standard does not)")


def parse_body(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"request body is not valid UTF-8 (byte {err.start}); send UTF-8 JSON") from err
    try:
        return json.loads(text, parse_constant=not_json)
    except (json.JSONDecodeError, NotJSON) as err:
        raise RequestError(400, f"request body is not valid JSON: {err}") from err
    except RecursionError as err:
        raise RequestError(400, "request body is nested too deeply to be a chat request") from err


def parse_request(body: bytes, max_messages: int, max_tokens_limit: int, default_max_tokens: int) -> Parsed:
    """A `Parsed` request, or a `RequestError` for the first thing wrong with it."""
    payload = parse_body(body)
    if not isinstance(payload, dict):
        raise RequestError(400, f"request body must be a JSON object, got {type(payload).__name__}")
    try:
        req = ChatRequest.model_validate(payload)
    except ValidationError as err:
        raise validation_error(err) from err
    for field, (ok, message) in UNSUPPORTED.items():
        if not ok(getattr(req, field)):
            raise RequestError(400, message, param=field)
    if req.stream_options is not None and not req.stream:
        raise RequestError(400, "stream_options is only allowed when stream is true", param="stream_options")
    if len(req.messages) > max_messages:
        raise RequestError(400, f"{len(req.messages)} messages; the limit is {max_messages}", param="messages")
    messages = []
    for i, message in enumerate(req.messages):
        text = message.text()
        if not text.strip():
            raise RequestError(400, f"messages[{i}].content is empty; every message needs text",
                               param=f"messages.{i}.content")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate ("\ud800") is valid JSON but no text
            raise RequestError(400, f"messages[{i}].content holds an unpaired UTF-16 surrogate at {err.start}",
                               param=f"messages.{i}.content") from err
        role = "system" if message.role == "developer" else message.role  # OpenAI's newer name for system
        if role == "system" and i != 0:
            raise RequestError(400, f"messages[{i}] is a system message after the conversation started; put the "
                               "system message first (this model's template has one, at the start)",
                               param=f"messages.{i}.role")
        messages.append({"role": role, "content": text})
    max_tokens = req.max_completion_tokens or req.max_tokens or default_max_tokens
    if max_tokens > max_tokens_limit:
        raise RequestError(400, f"max_tokens {max_tokens} exceeds the limit {max_tokens_limit}", param="max_tokens")
    stop = [req.stop] if isinstance(req.stop, str) else req.stop
    sampling = {"max_tokens": max_tokens, "temperature": req.temperature, "top_k": req.top_k, "top_p": req.top_p,
                "stop": stop, "seed": req.seed}
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return Parsed(messages=messages, sampling=sampling, stream=req.stream, include_usage=include_usage)
