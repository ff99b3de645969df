"""Muon: momentum SGD whose update is orthogonalised by a Newton-Schulz iteration (Keller Jordan, 2024).

Used for the 2-D weight matrices inside the transformer blocks; embeddings, the output head and norm weights stay
on AdamW (`build_optimizers`), as in modded-nanogpt. Under DDP every rank holds the same all-reduced gradient and
computes the same update, so no extra communication is needed; FSDP shards matrices, so Muon is refused there.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# Polar Express (Amsel et al. 2025, arXiv:2505.16932): per-iteration coefficients for 5 steps (safety 2e-2,
# cushion 2), as nanochat uses them; they converge to U V^T where the fixed quintic above stops at singular values
# in ~[0.7, 1.2]
POLAR_EXPRESS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def polar_express(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """U V^T of G by Polar Express, after MuonEq's row equilibration (every row rescaled to the mean row norm, so the
    spectrum is better conditioned) and with Muon+'s final Frobenius norm sqrt(min(m, n)) (nanochat's `optim.py`)."""
    X = G.bfloat16() if G.is_cuda else G.float()
    target = X.float().norm(dim=(-2, -1), keepdim=True) / X.size(-2) ** 0.5
    X = X * (target / X.float().norm(dim=-1, keepdim=True).clamp_min(1e-6)).to(X.dtype)
    transposed = G.size(-2) > G.size(-1)
    if transposed:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.01 + 1e-6)
    for a, b, c in POLAR_EXPRESS[:steps]:
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    if transposed:
        X = X.mT
    X = X.to(G.dtype)
    return X * (min(G.size(-2), G.size(-1)) ** 0.5 / X.float().norm(dim=(-2, -1), keepdim=True).clamp_min(1e-6))


def normuon_scale(update: torch.Tensor, second_moment: torch.Tensor, beta2: float) -> torch.Tensor:
    """NorMuon (arXiv:2510.05491): give every neuron (row of a wide matrix, column of a tall one) an update of the
    same running RMS, keeping the matrix's total norm; `second_moment` (the per-neuron running mean square) is updated
    in place."""
    dim = -1 if update.size(-2) >= update.size(-1) else -2
    mean_sq = update.float().square().mean(dim=dim, keepdim=True)
    norm = (mean_sq.sum(dim=(-2, -1), keepdim=True) * update.size(dim)).sqrt()  # per matrix of a stacked (3-D) one
    second_moment.lerp_(mean_sq, 1 - beta2)
    step = second_moment.clamp_min(1e-10).rsqrt()
    new_norm = ((mean_sq * update.size(dim)) * step.square()).sum(dim=(-2, -1), keepdim=True).sqrt()
    return update * (step * (norm / new_norm.clamp_min(1e-10))).to(update.dtype)


class Muon(torch.optim.Optimizer):
    """`cautious`: decay only the entries the update moves the same way as decay does (sign(update) = sign(p)), as
    nanochat: the decay then never pushes a weight against what the gradient asks of it. `variant="normuon"` is
    nanochat's step: Polar Express with row equilibration and norm snapping, then NorMuon's per-neuron scaling."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.0, ns_steps: int = 5,
                 cautious: bool = False, variant: str = "muon", beta2: float = 0.9):
        if variant not in ("muon", "normuon"):
            raise ValueError(f"Muon variant {variant!r}: expected 'muon' or 'normuon'")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps, cautious=cautious,
                        variant=variant, beta2=beta2)
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
                if group.get("variant", "muon") == "normuon":  # checkpoints of older runs lack the key
                    if "second_moment" not in state:
                        wide = p.size(-2) < p.size(-1)
                        per_neuron = (1, p.size(-1)) if wide else (p.size(-2), 1)
                        state["second_moment"] = p.new_zeros((*p.shape[:-2], *per_neuron), dtype=torch.float32)
                    update = polar_express(update, group["ns_steps"])
                    update = normuon_scale(update, state["second_moment"], group["beta2"])
                else:
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


def own_rates(
    model: nn.Module, lr: float, embed_lr: float, head_lr: float, scalar_lr: float, table_decay: float
) -> dict[int, tuple[float, float]]:
    """id(param) -> (lr, weight decay) for the parameters of a GPT that want their own AdamW settings (nanochat's):
    the untied embedding (embed_lr) and head (head_lr), the value embeddings (half embed_lr), all three decayed by
    `table_decay`; the x0 scalars at scalar_lr and the residual scalars at 1/100 of it, undecayed. A rate of 0 = lr."""
    embed, head = embedding_and_head(model)
    decoder = getattr(model, "model", None)
    rates: dict[int, tuple[float, float]] = {}
    if embed is not None:
        rates[id(embed)] = (embed_lr or lr, table_decay)
        rates[id(head)] = (head_lr or lr, table_decay)
    for table in getattr(decoder, "value_embeds", {}).values() if decoder is not None else ():
        rates[id(table.weight)] = (0.5 * embed_lr or lr, table_decay)
    if decoder is not None and hasattr(decoder, "x0_lambdas"):
        rates[id(decoder.x0_lambdas)] = (scalar_lr or lr, 0.0)
        rates[id(decoder.resid_lambdas)] = (0.01 * scalar_lr or lr, 0.0)
    return rates


@dataclass(frozen=True)
class OptimizerSpec:
    """What `build_optimizers` builds: the kind, the peak rates and decays of each group of parameters."""

    kind: str = "adamw"  # "adamw": AdamW over everything; "muon": Muon for block matrices + AdamW for the rest
    lr: float = 3e-3  # peak AdamW lr
    weight_decay: float = 0.0  # decoupled decay on matrices
    betas: tuple[float, float] = (0.9, 0.95)
    muon_lr: float = 0.02  # peak Muon lr (kind="muon")
    fused: bool = False  # fused AdamW kernel (CUDA)
    embed_lr: float = 0.0  # an untied input embedding's own lr; 0 = lr
    head_lr: float = 0.0  # an untied output head's own lr; 0 = lr
    cautious: bool = False  # Muon's cautious weight decay
    embed_weight_decay: float | None = None  # decay of the embedding, head and value embeddings; None = weight_decay
    scalar_lr: float = 0.0  # the x0 scalars' lr (residual scalars: 1/100 of it); 0 = lr
    muon_variant: str = "muon"  # "muon" (quintic Newton-Schulz) or "normuon"
    prefix_lrs: tuple[tuple[str, float], ...] = ()  # (parameter-name prefix, lr): e.g. a classification head's own


def build_optimizers(model: nn.Module, spec: OptimizerSpec) -> list[torch.optim.Optimizer]:
    """AdamW over everything (decay on matrices only), or Muon for block matrices + AdamW for the rest.

    Untied embedding tables, the head and the per-layer scalars get their own AdamW lrs and decay (`own_rates`;
    nanochat: a lookup table whose rows see few gradients wants a far larger lr than the head, whose every row moves
    each step, and next to no decay). Every param group records `base_lr`; the trainer multiplies it by the schedule.
    """
    lr, weight_decay = spec.lr, spec.weight_decay
    blocks, other, vectors = split_params(model)
    table_decay = weight_decay if spec.embed_weight_decay is None else spec.embed_weight_decay
    own = own_rates(model, lr, spec.embed_lr, spec.head_lr, spec.scalar_lr, table_decay)
    for prefix, prefix_lr in spec.prefix_lrs:
        prefixed = [(n, p) for n, p in model.named_parameters() if n.startswith(prefix) and p.requires_grad]
        own |= {id(p): (prefix_lr, weight_decay if p.ndim >= 2 else 0.0) for _, p in prefixed}
    if spec.kind == "muon":
        blocks, other = [p for p in blocks if id(p) not in own], other + [p for p in blocks if id(p) in own]
    shared = [p for p in other if id(p) not in own]
    matrices = shared if spec.kind == "muon" else [p for p in blocks if id(p) not in own] + shared
    adam_groups = [
        {"params": matrices, "weight_decay": weight_decay, "base_lr": lr},
        *({"params": [p], "weight_decay": own[id(p)][1], "base_lr": own[id(p)][0], "lr": own[id(p)][0]}
          for p in (other if spec.kind == "muon" else blocks + other) + vectors if id(p) in own),
        {"params": [p for p in vectors if id(p) not in own], "weight_decay": 0.0, "base_lr": lr},
    ]
    adam_groups = [g for g in adam_groups if g["params"]]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(adam_groups, lr=lr, betas=spec.betas, fused=spec.fused or None)
    ]
    if spec.kind == "muon" and blocks:
        optimizers.append(Muon([{"params": blocks, "base_lr": spec.muon_lr}], lr=spec.muon_lr,
                               weight_decay=weight_decay, cautious=spec.cautious, variant=spec.muon_variant))
    return optimizers


def muon_momentum(step: int, warmup: int, start: float = 0.85, end: float = 0.95) -> float:
    """Muon's momentum ramp (modded-nanogpt, nanochat): low momentum while the first, large gradients are noisy,
    rising linearly to `end` over `warmup` steps (0 = always `end`)."""
    return end if step >= warmup else start + (end - start) * step / warmup
