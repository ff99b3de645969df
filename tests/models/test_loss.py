"""The chunked output-head cross-entropy equals `F.cross_entropy` over full logits: values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.architectures.loss import ChunkedLinearCrossEntropy, chunk_rows, head_and_loss


@pytest.mark.parametrize("rows", [1, 7, 64, 10_000])  # one row per chunk, ragged last chunk, one chunk
def test_chunked_cross_entropy_equals_plain_values_and_gradients(rows):
    torch.manual_seed(0)
    hidden = torch.randn(300, 24, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 24, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (300,))
    targets[::7] = -1  # not scored
    plain = F.cross_entropy(F.linear(hidden, weight), targets, ignore_index=-1)
    grads = torch.autograd.grad(3 * plain, (hidden, weight))
    chunked = ChunkedLinearCrossEntropy.apply(hidden, weight, targets, rows)
    chunked_grads = torch.autograd.grad(3 * chunked, (hidden, weight))  # the upstream gradient is applied
    assert torch.allclose(chunked, plain, rtol=1e-12, atol=0)  # float64: equal up to summation order
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-14) for a, b in zip(chunked_grads, grads))


def test_soft_capped_logits_match_plain_values_and_gradients():
    torch.manual_seed(2)
    hidden = torch.randn(40, 12, dtype=torch.float64, requires_grad=True)
    weight = (4 * torch.randn(30, 12, dtype=torch.float64)).requires_grad_()  # logits well past the cap
    targets = torch.randint(0, 30, (40,))
    capped = 5.0 * torch.tanh(F.linear(hidden, weight) / 5.0)
    plain = F.cross_entropy(capped, targets)
    grads = torch.autograd.grad(plain, (hidden, weight))
    chunked = ChunkedLinearCrossEntropy.apply(hidden, weight, targets, 7, 5.0)
    assert torch.allclose(chunked, plain, rtol=1e-12, atol=0)
    chunked_grads = torch.autograd.grad(chunked, (hidden, weight))
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-14) for a, b in zip(chunked_grads, grads))
    head = nn.Linear(12, 30, bias=False).double()
    logits, _ = head_and_loss(hidden.detach()[None], head, None, softcap=5.0)
    assert logits.abs().max() < 5.0


def test_the_model_interface_and_float32_with_a_tied_head():
    torch.manual_seed(1)
    head = nn.Linear(16, 40, bias=False)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    targets = torch.randint(0, 40, (2, 9))
    logits, none = head_and_loss(hidden, head, None)
    assert logits.shape == (2, 9, 40) and logits.dtype == torch.float32 and none is None
    no_logits, loss = head_and_loss(hidden, head, targets)
    assert no_logits is None
    plain = F.cross_entropy(logits.view(-1, 40), targets.view(-1))
    assert loss.item() == pytest.approx(plain.item(), rel=1e-6)
    loss.backward()
    chunked_grads = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None
    F.cross_entropy(head(hidden).view(-1, 40), targets.view(-1)).backward()
    assert torch.allclose(chunked_grads[0], hidden.grad, atol=1e-6)
    assert torch.allclose(chunked_grads[1], head.weight.grad, atol=1e-6)


def test_nothing_scored_is_nan_like_plain_and_no_gradient_is_built_in_eval():
    hidden, weight = torch.randn(4, 8), torch.randn(10, 8)
    targets = torch.full((4,), -1)
    assert torch.isnan(ChunkedLinearCrossEntropy.apply(hidden, weight, targets, 2))
    assert torch.isnan(F.cross_entropy(hidden @ weight.T, targets, ignore_index=-1))
    with torch.no_grad():
        loss = ChunkedLinearCrossEntropy.apply(hidden, weight, torch.arange(4), 2)
    assert loss.grad_fn is None


def test_chunks_bound_the_logits_held_at_once():
    assert chunk_rows(50_304) * 50_304 <= 1 << 27  # gpt_124m: 2,668 rows of 32,768 per chunk, 512 MiB in fp32
    assert chunk_rows(4096) >= 8 * 256  # tiny_cpu's batch is one chunk (no slicing overhead on CPU)


@pytest.mark.parametrize("softcap", [0.0, 5.0])
def test_per_position_losses_are_the_terms_of_the_mean(softcap):
    torch.manual_seed(4)
    head = nn.Linear(16, 40, bias=False).double()
    hidden = torch.randn(3, 11, 16, dtype=torch.float64)
    targets = torch.randint(0, 40, (3, 11))
    targets[:, ::4] = -1  # not scored: a loss of 0
    _, mean = head_and_loss(hidden, head, targets, softcap)
    _, each = head_and_loss(hidden, head, targets, softcap, reduction="none")
    assert each.shape == (3, 11) and (each[targets == -1] == 0).all()
    assert torch.allclose(each.sum() / (targets != -1).sum(), mean, rtol=1e-12, atol=0)
    logits = head(hidden)  # float64, the full (B, T, V) the chunked path never builds
    logits = softcap * torch.tanh(logits / softcap) if softcap else logits
    plain = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1, reduction="none")
    assert torch.allclose(each.flatten(), plain, rtol=1e-12, atol=1e-12)
