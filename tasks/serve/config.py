"""`ServeConfig`: what `lmforge serve` and `lmforge chat` run with, apart from the server so the command line builds
its flags from it (`flows.cli.model_flags`) without importing the server."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.inference.quantize import Quantize


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_uri: str = Field(default="models:/lmforge@champion", description="models:/name@alias (any MLflow model "
                           "URI) or a checkpoint directory.")
    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0 exposes it).")
    port: int = Field(default=8000, description="TCP port.")
    device: str = Field(default="auto", description="auto (CUDA in bf16 when present, else CPU), cpu, cuda, cuda:N.")
    quantize: Quantize = Field(default="none", description="int8: int8 linear weights on CPU "
                               "(models.inference.quantize): faster decoding, slightly different answers.")
    api_key_env: str = Field(default="LMFORGE_API_KEY", description="Env var holding the API key; unset = no key.")
    max_request_bytes: int = Field(default=65536, ge=1024, description="Largest request body accepted (413 above).")
    max_messages: int = Field(default=64, ge=1, description="Most messages per request.")
    max_tokens_limit: int = Field(default=512, ge=1, description="Upper bound on a request's max_tokens.")
    default_max_tokens: int = Field(default=128, ge=1, description="max_tokens when the request gives none.")
    max_batch: int = Field(default=8, ge=1, description="Answers decoded together (continuous batching; gpt/gpt2).")
    max_queue: int = Field(default=16, ge=0, description="Requests waiting behind the running ones (429 beyond).")
    output_filter: Literal["pii", "none"] = Field(default="pii", description="Filter applied to every answer.")
