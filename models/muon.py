"""Muon: momentum SGD whose update is orthogonalised by a Newton-Schulz iteration (Keller Jordan, 2024).

Used for the 2-D weight matrices inside the transformer blocks; embeddings, the output head and norm weights stay
on AdamW (`build_optimizers`), as in modded-nanogpt. Under DDP every rank holds the same all-reduced gradient and
computes the same update, so no extra communication is needed; FSDP shards matrices, so Muon is refused there.
"""

from __future__ import annotations

import torch
from torch import nn


def zeropower_via_newtonschulz5(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U V^T of G = U S V^T, with the quintic coefficients tuned for speed over exactness."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16() if G.is_cuda else G.float()  # bf16 is stable enough on GPU; CPU bf16 matmuls are slow
    transposed = G.size(-2) > G.size(-1)
    if transposed:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    if transposed:
        X = X.mT
    return X.to(G.dtype)


class Muon(torch.optim.Optimizer):
    """`cautious`: decay only the entries the update moves the same way as decay does (sign(update) = sign(p)), as
    nanochat: the decay then never pushes a weight against what the gradient asks of it."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.0, ns_steps: int = 5,
                 cautious: bool = False):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps, cautious=cautious)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buf, group["momentum"])  # Nesterov
                update = zeropower_via_newtonschulz5(update, group["ns_steps"])
                if group.get("cautious"):  # checkpoints of older runs lack the key
                    p.sub_(p * (update * p > 0) * (group["lr"] * group["weight_decay"]))
                else:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                # scale so tall and wide matrices get updates of the same RMS
                p.add_(update, alpha=-group["lr"] * max(1.0, p.size(-2) / p.size(-1)) ** 0.5)


def split_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """(matrices inside blocks, other matrices = embeddings/head, vectors = norms), each parameter once."""
    blocks, other, vectors = [], [], []
    for name, p in model.named_parameters():  # named_parameters yields a tied tensor once
        if not p.requires_grad:
            continue
        if p.ndim < 2:
            vectors.append(p)
        elif ".layers." in f".{name}" or name.startswith("layers."):
            blocks.append(p)
        else:
            other.append(p)
    return blocks, other, vectors


def embedding_and_head(model: nn.Module) -> tuple[nn.Parameter | None, nn.Parameter | None]:
    """The GPT's untied input embedding and output head (None where tied, or for other architectures)."""
    embed = getattr(getattr(getattr(model, "model", None), "embed_tokens", None), "weight", None)
    head = getattr(getattr(model, "lm_head", None), "weight", None)
    if embed is None or head is None or embed is head:
        return None, None
    return embed, head


def build_optimizers(
    model: nn.Module,
    kind: str,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    muon_lr: float,
    fused: bool,
    embed_lr: float = 0.0,
    head_lr: float = 0.0,
    cautious: bool = False,
) -> list[torch.optim.Optimizer]:
    """AdamW over everything (decay on matrices only), or Muon for block matrices + AdamW for the rest.

    An untied GPT embedding and head get their own AdamW lrs when `embed_lr` / `head_lr` are set (nanochat: a lookup
    table whose rows see few gradients wants a far larger lr than the head, whose every row moves each step).
    Every param group records `base_lr`; the trainer multiplies it by the schedule each step.
    """
    blocks, other, vectors = split_params(model)
    embed, head = embedding_and_head(model)
    own = {id(p): rate for p, rate in ((embed, embed_lr), (head, head_lr)) if p is not None and rate > 0}
    shared = [p for p in other if id(p) not in own]
    adam_groups = [
        {"params": shared if kind == "muon" else blocks + shared, "weight_decay": weight_decay, "base_lr": lr},
        *({"params": [p], "weight_decay": weight_decay, "base_lr": own[id(p)], "lr": own[id(p)]}
          for p in other if id(p) in own),
        {"params": vectors, "weight_decay": 0.0, "base_lr": lr},
    ]
    adam_groups = [g for g in adam_groups if g["params"]]
    optimizers: list[torch.optim.Optimizer] = [torch.optim.AdamW(adam_groups, lr=lr, betas=betas, fused=fused or None)]
    if kind == "muon" and blocks:
        optimizers.append(
            Muon([{"params": blocks, "base_lr": muon_lr}], lr=muon_lr, weight_decay=weight_decay, cautious=cautious)
        )
    return optimizers


def muon_momentum(step: int, warmup: int, start: float = 0.85, end: float = 0.95) -> float:
    """Muon's momentum ramp (modded-nanogpt, nanochat): low momentum while the first, large gradients are noisy,
    rising linearly to `end` over `warmup` steps (0 = always `end`)."""
    return end if step >= warmup else start + (end - start) * step / warmup
