"""The classic GPT-2 recipe (nanoGPT): learned positions, LayerNorm, GELU MLP, biases, tied embeddings.

The baseline of the training benchmark (`bench/train.py`) and `model.arch="gpt2"`. Same interface as `models.gpt.GPT`
(`forward(idx, targets) -> (logits, None) | (None, loss)`, `generate`, `num_params`, `flops_per_token`), so the
trainer, checkpoints and evaluation work unchanged. `forward(idx, caches=...)` fills a KV cache (`new_caches`), so
the chat engine decodes one position per token; positions are learned, so the cache never holds more than `seq_len`.
"""

from __future__ import annotations

import torch
from torch import nn

from models.gpt import ModelConfig, append_sampled, cached_attention, new_kv_caches, sample_next
from models.loss import head_and_loss


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        y = cached_attention(q, k, v, cache, dropout=self.dropout if self.training else 0.0)
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

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x), cache))
        return x + self.drop(self.mlp(self.ln_2(x)))


class GPT2(nn.Module):
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
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, caches: list[dict] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        if caches and "pos" in caches[0]:  # batched decoding: one position per row, each at its own offset
            positions, start = caches[0]["pos"][:, None], int(caches[0]["pos"].max())  # (B, 1)
        else:
            start = caches[0]["len"] if caches else 0
            positions = torch.arange(start, start + T, device=idx.device)
        if start + T > self.config.seq_len:
            raise ValueError(f"gpt2 has learned positions for {self.config.seq_len} tokens, got {start + T}")
        x = self.wte(idx) + self.wpe(positions)  # (B, T, C)
        for i, block in enumerate(self.layers):
            if self.grad_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x, caches[i] if caches else None)
        for cache in caches or []:
            if "len" in cache:
                cache["len"] += T
        return head_and_loss(self.ln_f(x), self.lm_head, targets)  # logits (B, T, V) only without targets

    def new_caches(self, batch_size: int, max_len: int) -> list[dict]:
        c = self.config
        shape = (batch_size, c.n_head, min(max_len, c.seq_len), c.n_embd // c.n_head)
        return new_kv_caches(c.n_layer, shape, self.lm_head.weight)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None) -> torch.Tensor:
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.seq_len :])
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p)
            idx, done, finished = append_sampled(idx, nxt, done, eos_id)
            if finished:
                break
        return idx
