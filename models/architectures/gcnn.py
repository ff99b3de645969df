"""`model.arch="gcnn"`: a gated convolutional language model with causal convolutions (Dauphin et al. 2017).

Each of the `n_layer` residual blocks computes `h = (X*W + b) ⊗ σ(X*V + c)` — a gated linear unit over a causal
1-D convolution of width `KERNEL` — after a LayerNorm, then a linear projection back into the residual stream.
Causality comes from padding only on the left: the output at position t sees inputs t-(KERNEL-1)·d … t. One change
from the paper, for the small depths a CPU can train: block i uses dilation d = 2^(i mod 4) (as WaveNet/ByteNet do)
so 4 blocks see 46 tokens instead of 13; the paper's adaptive softmax and weight normalisation are left out (a
full softmax over a small vocabulary, LayerNorm instead). Embeddings are tied when `tie_embeddings`. The
transformer-only fields of `ModelConfig` are ignored. Same interface as `models.architectures.gpt.GPT`; generation
recomputes only the last receptive field's worth of tokens per new token, which gives exactly the logits of a full
forward pass.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.architectures.gpt import init_tied_embedding
from models.architectures.loss import head_and_loss
from models.architectures.registry import ModelConfig
from models.decoding.decoders import Decoding, WindowDecoder
from models.decoding.generation import Generation

KERNEL = 4


def dilation(layer: int) -> int:
    return 2 ** (layer % 4)


class GatedConvBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.pad = (KERNEL - 1) * dilation(layer)
        self.norm = nn.LayerNorm(cfg.n_embd)
        self.conv = nn.Conv1d(cfg.n_embd, 2 * cfg.n_embd, KERNEL, dilation=dilation(layer))  # value and gate halves
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.zeros_(self.proj.weight)  # every block starts as the identity, as in models.architectures.gpt
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).transpose(1, 2)  # (B, C, T)
        h = self.conv(F.pad(h, (self.pad, 0)))  # left padding only: position t never sees t+1 … (B, 2C, T)
        h = F.glu(h, dim=1).transpose(1, 2)  # value * sigmoid(gate): (B, T, C)
        return x + self.drop(self.proj(h))


class GCNN(Generation, nn.Module):
    decoding = Decoding(WindowDecoder)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # registered first: the saved name when tied
        self.layers = nn.ModuleList(GatedConvBlock(cfg, i) for i in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        nn.init.normal_(self.embed_tokens.weight, std=0.02)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
            init_tied_embedding(self.embed_tokens)  # identity blocks: see models.architectures.gpt.init_tied_embedding
        else:
            nn.init.normal_(self.lm_head.weight, std=0.02)
        self.grad_checkpointing = False  # set by models.distributed.parallelize.parallelize

    @property
    def receptive_field(self) -> int:
        """Tokens one output position depends on (itself included)."""
        return 1 + sum(block.pad for block in self.layers)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """6 x the weights a token passes through (convolutions, projections, head)."""
        return 6.0 * (self.num_params() - (0 if self.config.tie_embeddings else self.embed_tokens.weight.numel()))

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: Literal["mean", "none"] = "mean"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> (logits (B, T, V) in float32, None), or (None, mean cross-entropy over targets != -1)."""
        x = self.embed_tokens(idx)  # (B, T, C)
        for block in self.layers:
            if self.grad_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return head_and_loss(self.norm(x), self.lm_head, targets, reduction=reduction)  # logits only without targets
