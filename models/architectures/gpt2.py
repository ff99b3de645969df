"""The classic GPT-2 recipe (nanoGPT): learned positions, LayerNorm, GELU MLP, biases, tied embeddings.

The baseline of the training benchmark (`bench/train.py`) and `model.arch="gpt2"`. Same interface as
`models.architectures.gpt.GPT` (`forward(idx, targets) -> (logits, None) | (None, loss)`, `generate`, `num_params`,
`flops_per_token`), so the trainer, checkpoints and evaluation work unchanged. `forward(idx, cache=...)` fills a KV
cache (`new_cache`), so every generation path decodes one position per token; positions are learned, so the cache never
holds more than `seq_len` (a full one restarts on the last half, `models.decoding.decoders.decode`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models.architectures.gpt import cached_attention
from models.architectures.loss import head_and_loss
from models.architectures.registry import ModelConfig
from models.decoding.decoders import Decoding, KVCacheDecoder
from models.decoding.generation import Generation
from models.decoding.kv_cache import KVCache


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        y = cached_attention(q, k, v, cache, layer, dropout=self.dropout if self.training else 0.0)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(approximate="tanh"), nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x), cache, layer))
        return x + self.drop(self.mlp(self.ln_2(x)))


class GPT2(Generation, nn.Module):
    decoding = Decoding(KVCacheDecoder, batched=True)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # GPT-2 always ties
        self.grad_checkpointing = False
        for name, p in self.named_parameters():  # nanoGPT init: N(0, 0.02), residual projections scaled by depth
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                std = 0.02 / (2 * cfg.n_layer) ** 0.5 if name.endswith(("c_proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        c, T = self.config, seq_len or self.config.seq_len
        return 6 * (self.num_params() - self.wpe.weight.numel()) + 12 * c.n_layer * c.n_embd * T

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
        reduction: Literal["mean", "none"] = "mean",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        start = cache.start if cache is not None else 0
        if cache is not None and cache.pos is not None:  # batched decoding: one position per row, each its own
            positions = cache.pos[:, None]  # (B, 1)
        else:
            positions = torch.arange(start, start + T, device=idx.device)
        if start + T > self.config.seq_len:
            raise ValueError(f"gpt2 has learned positions for {self.config.seq_len} tokens, got {start + T}")
        x = self.wte(idx) + self.wpe(positions)  # (B, T, C)
        for i, block in enumerate(self.layers):
            if self.grad_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x, cache, i)
        if cache is not None:
            cache.advance(T)
        return head_and_loss(self.ln_f(x), self.lm_head, targets, reduction=reduction)  # logits only without targets

    def new_cache(self, batch_size: int, max_len: int | None) -> KVCache:
        """An empty cache for `batch_size` sequences of `max_len` positions, at most the `seq_len` learned ones."""
        c = self.config
        shape = (batch_size, c.n_head, min(max_len or c.seq_len, c.seq_len), c.n_embd // c.n_head)
        return KVCache.empty(c.n_layer, shape, self.wte.weight)
