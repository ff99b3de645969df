"""The lmforge GPT: a decoder-only transformer in pure torch.

Llama-style blocks: RoPE, RMSNorm, SwiGLU MLP, no biases, grouped-query attention, optional QK-norm, optional tied
embeddings, `F.scaled_dot_product_attention`, zero-initialised output projections. Parameter names and layouts are
those of Hugging Face `LlamaForCausalLM` (`Qwen3ForCausalLM` when `qk_norm`), e.g.
`model.layers.0.self_attn.q_proj.weight`, and RoPE uses HF's rotate-half convention, so a state dict exports 1:1.
Generation uses a KV cache (`models.decoding.kv_cache`); sampling (temperature / top-k / top-p) and every
arch's `generate`, the one decode loop through the decoder an arch declares, live beside it in
`models/decoding/` (`sampling`, `generation`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.architectures.loss import head_and_loss
from models.architectures.registry import ModelConfig
from models.decoding.decoders import Decoding, KVCacheDecoder
from models.decoding.generation import Generation
from models.decoding.kv_cache import KVCache


class RMSNorm(nn.Module):
    """HF LlamaRMSNorm: normalise in float32, scale by a learned weight in the input dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).type_as(x)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


VE_GATE_CHANNELS = 12  # the value-embedding gate reads the first channels of the block's input (nanochat)


def has_value_embed(layer: int, n_layer: int) -> bool:
    """Value embeddings sit on every other layer, the last included (nanochat's placement)."""
    return layer % 2 == (n_layer - 1) % 2


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim, self.dropout = cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.dropout
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_head * cfg.head_dim, bias=cfg.attn_bias)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=cfg.attn_bias)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=cfg.attn_bias)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
            self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        self.qk_norm = cfg.qk_norm
        if cfg.value_embeds and has_value_embed(layer, cfg.n_layer):
            self.ve_gate = nn.Linear(VE_GATE_CHANNELS, cfg.n_kv_head, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None = None, layer: int = 0,
                ve: Tensor | None = None) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim)
        if ve is not None:  # value residual: each head mixes in the token's value embedding through a gate in (0, 3)
            gate = 3 * torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS]))  # (B, T, Hkv)
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)
        v = v.transpose(1, 2)  # (B, Hkv, T, D)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, T, D)
        q = (q * cos + rotate_half(q) * sin).type_as(v)  # cos, sin: (T, D) for positions start..start+T
        k = (k * cos + rotate_half(k) * sin).type_as(v)
        groups = self.n_head // self.n_kv_head
        y = cached_attention(q, k, v, cache, layer, groups, self.dropout if self.training else 0.0)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, C)


def cached_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cache: KVCache | None,
    layer: int = 0,
    groups: int = 1,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Causal attention of q (B, H, T, D) over k, v (B, Hkv, T, D), appended first to layer `layer` of `cache` when
    given (the keys and values of the positions before these T, so a decoding step costs one position, whatever came
    before)."""
    if cache is not None and cache.pos is not None:
        return slot_attention(q, k, v, cache, layer, groups)
    T, past = q.size(2), 0
    if cache is not None:
        past = cache.start
        k, v = cache.append(layer, k, v)  # (B, Hkv, past + T, D)
    gqa = groups > 1  # SDPA broadcasts each key/value head over its group of query heads, without copying them
    if past == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, enable_gqa=gqa)
    if T == 1:  # a decoding step: the one new query sees every key
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    # queries at positions past..past+T-1 see every key up to their own position
    mask = torch.ones(T, past + T, dtype=torch.bool, device=q.device).tril(diagonal=past)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


def slot_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, layer: int, groups: int
) -> torch.Tensor:
    """Batched decoding: row i is one new position `cache.pos[i]` of the sequence in cache row `cache.rows[i]`, so
    sequences of different lengths advance together in one forward pass (continuous batching)."""
    k, v = cache.scatter(layer, k, v)  # (B, Hkv, n, D), n = the furthest position + 1
    n = k.size(2)
    mask = (torch.arange(n, device=q.device)[None, :] <= cache.pos[:, None])[:, None, None, :]  # (B, 1, 1, n)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=groups > 1)


class MLP(nn.Module):
    """SwiGLU (Llama's), or ReLU^2 (nanochat's, `mlp="relu2"`): down(relu(up(x))^2), no gate."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.relu2 = cfg.mlp == "relu2"
        if not self.relu2:
            self.gate_proj = nn.Linear(cfg.n_embd, cfg.hidden_dim, bias=False)
        self.up_proj = nn.Linear(cfg.n_embd, cfg.hidden_dim, bias=False)
        self.down_proj = nn.Linear(cfg.hidden_dim, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu2:
            return self.down_proj(F.relu(self.up_proj(x)).square())
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None = None, layer: int = 0,
                ve: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.self_attn(self.input_layernorm(x), cos, sin, cache, layer, ve))
        return x + self.drop(self.mlp(self.post_attention_layernorm(x)))


class Transformer(nn.Module):
    """HF's `model.` prefix: embeddings, blocks and final norm (and the options HF lacks: value embeddings, keyed
    by layer, and the per-layer residual and x0 scalars)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        if cfg.value_embeds:
            kv_dim = cfg.n_kv_head * cfg.head_dim
            layers = [i for i in range(cfg.n_layer) if has_value_embed(i, cfg.n_layer)]
            self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(cfg.vocab_size, kv_dim) for i in layers})
        if cfg.residual_scalars:
            self.resid_lambdas = nn.Parameter(torch.ones(cfg.n_layer))
            self.x0_lambdas = nn.Parameter(torch.zeros(cfg.n_layer))


class GPT(Generation, nn.Module):
    decoding = Decoding(KVCacheDecoder, batched=True)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = Transformer(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.grad_checkpointing = False  # set by models.distributed.parallelize.parallelize
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for block in self.model.layers:  # zero-init residual outputs: every block starts as the identity
            nn.init.zeros_(block.self_attn.o_proj.weight)
            nn.init.zeros_(block.mlp.down_proj.weight)
        if cfg.tie_embeddings:  # after apply(), whose Linear init also reached the shared weight as lm_head
            init_tied_embedding(self.model.embed_tokens)
        self._init_nanochat_options()

    @torch.no_grad()
    def _init_nanochat_options(self) -> None:
        """nanochat's init of its extras: smaller MLP input matrices, value embeddings drawn like the value
        projection, gates slightly open, a residual scale falling from 1.15 to 1.05 and an x0 share from 0.2 to 0.05
        with depth (early layers keep more of the embedding)."""
        cfg = self.config
        for block in self.model.layers:
            for name in ("gate_proj", "up_proj"):
                if hasattr(block.mlp, name):
                    getattr(block.mlp, name).weight.mul_(cfg.mlp_init_scale)
            if hasattr(block.self_attn, "ve_gate"):
                nn.init.uniform_(block.self_attn.ve_gate.weight, 0.0, 0.02)
        if cfg.value_embeds:
            for ve in self.model.value_embeds.values():
                nn.init.normal_(ve.weight, std=cfg.n_embd**-0.5)
        if cfg.residual_scalars:
            depth = torch.arange(cfg.n_layer, dtype=torch.float32) / max(cfg.n_layer - 1, 1)
            self.model.resid_lambdas.copy_(1.15 - 0.10 * depth)
            self.model.x0_lambdas.copy_(0.20 - 0.15 * depth)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features**-0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02 if self.config.tie_embeddings else 1.0)
        if module is self.lm_head and not self.config.tie_embeddings:
            nn.init.normal_(module.weight, std=0.001)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6 x matmul params + 12 L H D T for attention (PaLM appendix B, as nanoGPT)."""
        c, T = self.config, seq_len or self.config.seq_len
        lookups = [] if c.tie_embeddings else [self.model.embed_tokens]  # table look-ups, not matmuls
        lookups += list(self.model.value_embeds.values()) if c.value_embeds else []
        matmul_params = self.num_params() - sum(e.weight.numel() for e in lookups)
        return 6 * matmul_params + 12 * c.n_layer * c.n_head * c.head_dim * T

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
        reduction: Literal["mean", "none"] = "mean",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> (logits (B, T, V) in float32, None), or with targets (None, mean cross-entropy over targets
        != -1; per position (B, T) with `reduction="none"`): the loss is computed chunk by chunk
        (`models.architectures.loss`), so the full logits are never built. With a
        `cache` (a view, `KVCache.at`) the T positions continue the sequences cached in its rows."""
        B, T = idx.shape
        start = cache.start if cache is not None else 0
        if cache is not None and cache.pos is not None:  # batched decoding: one position per row, each its own
            cos, sin = self.rope_cos[cache.pos][:, None, None, :], self.rope_sin[cache.pos][:, None, None, :]
        else:
            cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]  # (T, D)
        if start + T > self.rope_cos.size(0):
            raise ValueError(f"sequence of {start + T} tokens exceeds the RoPE table ({self.rope_cos.size(0)})")
        x = self.model.embed_tokens(idx)  # (B, T, C)
        if self.config.embed_norm:
            x = F.rms_norm(x, (x.size(-1),), eps=self.config.norm_eps)
        x0, decoder = x, self.model
        for i, block in enumerate(decoder.layers):
            if self.config.residual_scalars:
                x = decoder.resid_lambdas[i] * x + decoder.x0_lambdas[i] * x0
            tables = decoder.value_embeds if self.config.value_embeds else {}
            ve = tables[str(i)](idx) if str(i) in tables else None
            if self.grad_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, cos, sin, None, i, ve, use_reentrant=False)
            else:
                x = block(x, cos, sin, cache, i, ve)
        if cache is not None:
            cache.advance(T)
        # logits (B, T, V) only without targets
        return head_and_loss(self.model.norm(x), self.lm_head, targets, self.config.logit_softcap, reduction)

    def new_cache(self, batch_size: int, max_len: int | None) -> KVCache:
        """An empty cache for `batch_size` sequences of `max_len` positions (None, or more than the RoPE table
        covers: as many as it covers)."""
        c, limit = self.config, self.rope_cos.size(0)
        shape = (batch_size, c.n_kv_head, min(max_len or limit, limit), c.head_dim)
        return KVCache.empty(c.n_layer, shape, self.model.embed_tokens.weight)


def rope_tables(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (4T, D) in HF's rotate-half layout: 4x the training context so generation may run past it;
    never saved (derived from the config)."""
    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim)
    freqs = torch.outer(torch.arange(4 * cfg.seq_len, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def init_tied_embedding(embedding: nn.Embedding) -> None:
    """Start a tied-embedding model with identity blocks at a loss of about ln V: embedding std 1 / n_embd.

    Such a model outputs its input's own embedding e through the final norm, so the logit of the input token is
    |e|^2 / rms(e) = n_embd x std (with std 0.036: 27.7 nats of loss at `gpt_124m`, ln V = 10.8) and the first steps
    go to undoing that copy. With std 1 / n_embd that logit is 1 and the others ~1/sqrt(n_embd): the untrained model
    predicts nearly uniformly. (Shrinking the final norm's gain instead starts as well but learns far slower: one
    gain per channel must grow at Adam's lr, where every element of a small embedding grows at that pace.) The blocks
    read the residual stream through RMSNorm, so its small start costs them nothing; untied heads start near zero.
    """
    nn.init.normal_(embedding.weight, std=1.0 / embedding.weight.size(1))
