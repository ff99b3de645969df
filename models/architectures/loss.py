"""The output head's cross-entropy, computed a chunk of positions at a time so the full (B*T, V) fp32 logits of a
batch never exist (at the `gpt_124m` preset they would be 6.6 GB).

`ChunkedLinearCrossEntropy` fuses the head's matmul with the loss, as Liger-Kernel's fused linear cross-entropy
does: for each chunk of rows it computes the logits, the loss, and already the gradients of the hidden states and
the head weight (softmax minus one-hot, then two matmuls), and drops the logits. Backward only scales the stored
gradients, so the work is the same three matmuls an unfused head costs and peak memory is one chunk's logits.
Without autograd (evaluation) only the loss is computed. An optional soft cap squashes the logits to
(-cap, cap) with `cap * tanh(logits / cap)` (Gemma 2, nanochat) before the softmax; its derivative scales the
gradient of the logits by 1 - tanh^2.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

CHUNK_ELEMENTS = 1 << 27  # logits per chunk: 512 MiB in fp32; a 2048 x 4096 CPU batch is one chunk


def chunk_rows(vocab_size: int) -> int:
    return max(1, CHUNK_ELEMENTS // vocab_size)


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """mean cross-entropy of `hidden @ weight.T` (N, V), soft-capped at `softcap` when > 0, against targets (N,),
    ignoring targets of -1."""

    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int, softcap: float = 0.0
    ) -> torch.Tensor:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        valid = targets != -1
        count = valid.sum()
        loss = torch.zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32), device=hidden.device)
        scale = 1.0 / count.clamp(min=1).to(loss.dtype)  # mean over scored positions, as F.cross_entropy
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=loss.dtype, device=weight.device) if need_w else None
        for start in range(0, hidden.size(0), rows):
            h = hidden[start : start + rows].to(weight.dtype)  # (n, C); FSDP's bf16 params may meet fp32 states
            y, keep = targets[start : start + rows], valid[start : start + rows]
            logits = F.linear(h, weight).to(loss.dtype)  # (n, V); under autocast the matmul runs in 16 bits
            squash = None
            if softcap > 0:
                squash = torch.tanh(logits / softcap)
                logits = squash * softcap
            kept = keep.to(loss.dtype)
            lse = torch.logsumexp(logits, dim=-1)
            target_logit = logits.gather(1, y.clamp(min=0)[:, None])[:, 0]
            loss = loss + ((lse - target_logit) * kept).sum()
            if need_h or need_w:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                probs.scatter_add_(1, y.clamp(min=0)[:, None], -kept[:, None])  # minus the one-hot target
                grad_logits = probs.mul_((kept * scale)[:, None])  # (n, V): d loss/d logits
                if squash is not None:  # through the cap: d(cap tanh(z / cap))/dz = 1 - tanh^2
                    grad_logits = grad_logits.mul_(1 - squash.square_())
                grad_logits = grad_logits.to(weight.dtype)
                if need_h:
                    grad_h[start : start + rows] = grad_logits @ weight  # (n, C)
                if need_w:
                    grad_w += grad_logits.T @ h  # (V, C), accumulated in fp32 (at least) over the chunks
        ctx.save_for_backward(*(g for g in (grad_h, grad_w) if g is not None))
        ctx.has, ctx.weight_dtype = (need_h, need_w), weight.dtype
        return loss / count  # nan when nothing is scored, as F.cross_entropy

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        saved = list(ctx.saved_tensors)
        grad_h = saved.pop(0) * grad_loss if ctx.has[0] else None
        grad_w = saved.pop(0) * grad_loss if ctx.has[1] else None
        if grad_w is not None:
            grad_w = grad_w.to(ctx.weight_dtype)
        return grad_h, grad_w, None, None, None


def token_losses(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int,
                 softcap: float = 0.0) -> torch.Tensor:
    """Per-position cross-entropy (N,) of `hidden @ weight.T` against targets (N,), 0 where the target is -1: the
    terms `ChunkedLinearCrossEntropy` averages, computed the same way a chunk at a time. For evaluation (no
    gradients): the evaluate stage sums them per document."""
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    out = torch.zeros(hidden.size(0), dtype=dtype, device=hidden.device)
    with torch.no_grad():
        for start in range(0, hidden.size(0), rows):
            y = targets[start : start + rows]
            logits = F.linear(hidden[start : start + rows].to(weight.dtype), weight).to(dtype)  # (n, V)
            if softcap > 0:
                logits = torch.tanh(logits / softcap) * softcap
            lse = torch.logsumexp(logits, dim=-1)
            target_logit = logits.gather(1, y.clamp(min=0)[:, None])[:, 0]
            out[start : start + rows] = (lse - target_logit) * (y != -1).to(dtype)
    return out


def head_and_loss(
    hidden: torch.Tensor, head: nn.Linear, targets: torch.Tensor | None, softcap: float = 0.0,
    reduction: Literal["mean", "none"] = "mean",
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """hidden (B, T, C) -> (logits (B, T, V) in fp32, None) without targets; (None, mean loss) with targets (B, T),
    where -1 marks positions not scored, or with `reduction="none"` (None, per-position losses (B, T), 0 where not
    scored; no gradients). With targets the logits are never built whole (see the module docstring).
    softcap > 0 squashes the logits to (-softcap, softcap) in all cases."""
    if targets is None:
        logits = head(hidden).float()
        return (softcap * torch.tanh(logits / softcap) if softcap > 0 else logits), None
    weight = head.weight
    flat = hidden.reshape(-1, hidden.size(-1))  # (B*T, C)
    if reduction == "none":
        losses = token_losses(flat, weight, targets.reshape(-1), chunk_rows(weight.size(0)), softcap)
        return None, losses.view(targets.shape)
    loss = ChunkedLinearCrossEntropy.apply(flat, weight, targets.reshape(-1), chunk_rows(weight.size(0)), softcap)
    return None, loss
