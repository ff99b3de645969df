"""The architecture registry: `ModelConfig`, the one config every arch takes, and `build_model`, which builds
the arch a config names from `ARCHS` ("module:Class" strings, imported on demand, so a config loads without
importing any architecture).
"""

from __future__ import annotations

import importlib
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn


# The options HF Llama/Qwen lack, each with its value when off (`ModelConfig.hf_compatible`).
HF_INCOMPATIBLE = {"mlp": "swiglu", "logit_softcap": 0.0, "embed_norm": False, "value_embeds": False,
                   "residual_scalars": False}
# arch -> "module:Class"; every class takes a ModelConfig and has forward(idx, targets), generate(...), num_params()
ARCHS = {
    "gpt": "models.architectures.gpt:GPT",
    "gpt2": "models.architectures.gpt2:GPT2",
    "rnn": "models.architectures.rnn:RNNLM",
    "gcnn": "models.architectures.gcnn:GCNN",
}


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: Literal["gpt", "gpt2", "rnn", "gcnn"] = Field(default="gpt", description="Architecture (see models.ARCHS).")
    n_layer: int = Field(default=4, ge=1, description="Transformer blocks.")
    n_embd: int = Field(default=256, ge=8, description="Width of the residual stream.")
    n_head: int = Field(default=4, ge=1, description="Query heads; head_dim = n_embd / n_head.")
    n_kv_head: int = Field(default=4, ge=1, description="Key/value heads (grouped-query attention); divides n_head.")
    intermediate_size: int = Field(default=0, ge=0, description="SwiGLU hidden width; 0 = 8/3 n_embd rounded to 64.")
    seq_len: int = Field(default=256, ge=2, description="Context length the model is trained at.")
    vocab_size: int = Field(default=0, ge=0, description="Vocabulary size; 0 = take it from the tokenizer.")
    qk_norm: bool = Field(default=False, description="RMSNorm on queries and keys per head (Qwen3 layout).")
    attn_bias: bool = Field(default=False, description="Biases on the q/k/v projections (Qwen2 layout).")
    head_size: int = Field(default=0, ge=0, description="Width of one head; 0 = n_embd / n_head (Qwen3 sets more).")
    tie_embeddings: bool = Field(default=True, description="Share the input embedding with the output head.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on attention and residual branches.")
    rope_theta: float = Field(default=10000.0, gt=0, description="RoPE base frequency.")
    norm_eps: float = Field(default=1e-6, gt=0, description="RMSNorm epsilon.")
    # Options HF Llama/Qwen lack (nanochat's recipe): a model using any of them trains, evaluates and serves here but
    # does not export to transformers (tasks.registry.export refuses it); imported models keep them off.
    mlp: Literal["swiglu", "relu2"] = Field(
        default="swiglu", description="MLP: SwiGLU (Llama), or ReLU^2 with one up projection (not exportable)."
    )
    logit_softcap: float = Field(
        default=0.0, ge=0, description="Squash logits to (-c, c) with c tanh(z / c); 0 = off (not exportable)."
    )
    embed_norm: bool = Field(
        default=False, description="RMS-normalise the token embeddings before the first block (not exportable)."
    )
    value_embeds: bool = Field(
        default=False, description="ResFormer value embeddings on every other layer and the last: a per-token vector "
        "added, through a learned per-head gate, to the layer's values (not exportable).",
    )
    residual_scalars: bool = Field(
        default=False, description="Before each block, scale the residual stream by a learned per-layer scalar and add "
        "the embedding back in by another (nanochat's resid / x0 lambdas; not exportable).",
    )
    mlp_init_scale: float = Field(
        default=1.0, gt=0, description="Init std of the MLP's input matrices relative to 1/sqrt(n_embd) (nanochat: "
        "0.4); an init choice only, so exportable.",
    )

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        if self.head_size % 2:
            raise ValueError(f"head_size={self.head_size} must be even (RoPE rotates pairs of channels)")
        if not self.head_size and (self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2):
            raise ValueError(f"n_embd={self.n_embd} must split into n_head={self.n_head} heads of even size")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head}")
        return self

    @property
    def head_dim(self) -> int:
        return self.head_size or self.n_embd // self.n_head

    @property
    def hidden_dim(self) -> int:
        if self.intermediate_size:
            return self.intermediate_size
        # the same parameter count either way: SwiGLU's three matrices at 8/3 d, ReLU^2's two at 4 d
        return 4 * self.n_embd if self.mlp == "relu2" else 64 * math.ceil(8 * self.n_embd / 3 / 64)

    @property
    def hf_compatible(self) -> bool:
        """Whether transformers' Llama/Qwen classes compute what this model computes (see the options above)."""
        return not self.incompatible_options

    @property
    def incompatible_options(self) -> dict[str, object]:
        """The options set here that HF Llama/Qwen cannot compute, by name, with their values."""
        return {name: getattr(self, name) for name, off in HF_INCOMPATIBLE.items() if getattr(self, name) != off}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the architecture `cfg.arch` names (vocab_size must be set by now)."""
    if cfg.vocab_size <= 0:
        raise ValueError("model.vocab_size is 0: set it from the tokenizer (cfg.model_copy(update={'vocab_size': n}))")
    module_name, class_name = ARCHS[cfg.arch].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise NotImplementedError(f"model.arch={cfg.arch!r} is not implemented yet ({module_name} missing)") from err
    return getattr(module, class_name)(cfg)
