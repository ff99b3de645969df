"""`model.arch="rnn"`: a multi-layer LSTM language model with tied input/output embeddings.

The recurrent baseline of the architecture comparison (`bench/arch.py`), after the AWD-LSTM / Merity et al. recipe
without its regularisers: token embedding, `n_layer` single-layer LSTMs of width `n_embd` with a residual connection
and dropout between them, a final LayerNorm and the output head tied to the embedding (Press & Wolf 2017). Each
layer is its own `nn.LSTM` under `layers.N`, so Muon's "matrices inside blocks" rule, FSDP's per-block sharding and
activation checkpointing see one block per layer, as for the transformers. The transformer-only fields of
`ModelConfig` (heads, RoPE, QK-norm, `intermediate_size`) are ignored. Same interface as `models.architectures.gpt.GPT`:
`forward(idx, targets) -> (logits, None) | (None, loss)`, `generate`, `num_params`, `flops_per_token`; generation
carries the LSTM state, so each new token costs one step whatever the context length.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models.architectures.loss import head_and_loss
from models.architectures.registry import ModelConfig
from models.decoding.decoders import Decoding, RecurrentDecoder
from models.decoding.generation import Generation

State = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (h, c), each (1, B, C)


class LSTMBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.lstm = nn.LSTM(cfg.n_embd, cfg.n_embd, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        with torch.no_grad():  # forget-gate bias 1 (Jozefowicz et al. 2015): remember by default early in training
            for bias in (self.lstm.bias_ih_l0, self.lstm.bias_hh_l0):
                bias.zero_()
                bias[cfg.n_embd : 2 * cfg.n_embd] = 0.5  # gates are (i, f, g, o); the two biases add up to 1

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        y, new_state = self.lstm(x, state)  # (B, T, C)
        return x + self.drop(y), new_state  # residual: deep stacks train as easily as shallow ones


class RNNLM(Generation, nn.Module):
    decoding = Decoding(RecurrentDecoder, batched=True)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # registered first: the saved name when tied
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(LSTMBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        nn.init.normal_(self.embed_tokens.weight, std=0.02)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        else:
            nn.init.normal_(self.lm_head.weight, std=0.02)
        self.grad_checkpointing = False  # set by models.distributed.parallelize.parallelize

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """6 x the parameters a token passes through (LSTM matmuls + head); no sequence-length term."""
        return 6.0 * (self.num_params() - (0 if self.config.tie_embeddings else self.embed_tokens.weight.numel()))

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, state: State | None = None,
        reduction: Literal["mean", "none"] = "mean",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> (logits (B, T, V) in float32, None), or (None, mean cross-entropy over targets != -1).

        With `state` (a list filled by a previous call, or empty to start), the final LSTM states are written back
        into it, so generation continues from where the last call stopped.
        """
        x = self.drop(self.embed_tokens(idx))  # (B, T, C)
        new_state: State = []
        for i, block in enumerate(self.layers):
            previous = state[i] if state else None
            if self.grad_checkpointing and self.training:
                x, layer_state = torch.utils.checkpoint.checkpoint(block, x, previous, use_reentrant=False)
            else:
                x, layer_state = block(x, previous)
            new_state.append(layer_state)
        if state is not None:
            state[:] = new_state
        return head_and_loss(self.norm(x), self.lm_head, targets, reduction=reduction)  # logits only without targets
