"""Optimizer groups of the nanochat recipe: embedding and head lrs, Muon's momentum ramp, cautious weight decay."""

from __future__ import annotations

import torch

from models.architectures.registry import ModelConfig, build_model
from models.optimisation.muon import Muon, OptimizerSpec, build_optimizers, muon_momentum


def tiny(tie: bool):
    torch.manual_seed(0)
    return build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2, n_kv_head=2, seq_len=8, vocab_size=50,
                                   tie_embeddings=tie))


def test_untied_embedding_and_head_get_their_own_lrs_and_muon_the_block_matrices():
    model = tiny(tie=False)
    spec = OptimizerSpec("muon", 3e-3, 0.1, (0.9, 0.95), 0.02, embed_lr=0.6, head_lr=0.016)
    adam, muon = build_optimizers(model, spec)
    lr_of = {id(p): g["base_lr"] for g in adam.param_groups for p in g["params"]}
    assert lr_of[id(model.model.embed_tokens.weight)] == 0.6 and lr_of[id(model.lm_head.weight)] == 0.016
    assert lr_of[id(model.model.norm.weight)] == 3e-3
    blocks = {id(p) for g in muon.param_groups for p in g["params"]}
    assert id(model.model.layers[0].mlp.up_proj.weight) in blocks and not blocks & set(lr_of)
    # a tied matrix is both: it keeps the shared lr
    tied = tiny(tie=True)
    (adam,) = build_optimizers(tied, OptimizerSpec("adamw", 3e-3, 0.1, (0.9, 0.95), 0.02, embed_lr=0.6,
                                                   head_lr=0.016))
    assert {g["base_lr"] for g in adam.param_groups} == {3e-3}


def test_momentum_ramps_then_holds():
    assert muon_momentum(0, 0) == 0.95 and muon_momentum(0, 10) == 0.85
    assert abs(muon_momentum(5, 10) - 0.90) < 1e-12 and muon_momentum(10, 10) == muon_momentum(99, 10) == 0.95


def test_cautious_decay_spares_weights_the_update_grows():
    p = torch.nn.Parameter(torch.tensor([[1.0, -1.0], [1.0, -1.0]]))
    p.grad = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # the step moves every weight down: shrinks col 0, grows col 1
    plain, cautious = p.detach().clone(), None
    for flag in (False, True):
        q = torch.nn.Parameter(plain.clone())
        q.grad = p.grad.clone()
        Muon([q], lr=0.1, momentum=0.0, weight_decay=1.0, cautious=flag).step()
        if flag:
            cautious = q.detach()
        else:
            decayed = q.detach()
    # the update is the same; decay differs only where it would fight the update (the negative column)
    assert torch.allclose(cautious[:, 0], decayed[:, 0]) and (cautious[:, 1] < decayed[:, 1]).all()


def test_polar_express_orthogonalises_the_row_equilibrated_update():
    from models.optimisation.muon import polar_express

    torch.manual_seed(0)
    for shape in ((16, 48), (48, 16)):
        G = torch.randn(*shape) * torch.logspace(-2, 1, shape[0])[:, None]  # rows of very different scales
        X = polar_express(G)
        rows = G / G.norm(dim=-1, keepdim=True)  # equilibration gives every row the same norm first
        U, _, Vh = torch.linalg.svd(rows, full_matrices=False)
        assert torch.linalg.svdvals(X).sub(1).abs().max() < 0.3  # every direction moves by about the same amount
        assert torch.allclose(X.norm(), torch.tensor(min(shape) ** 0.5), rtol=1e-4)  # Muon+'s norm snap
        cosine = (X * (U @ Vh)).sum() / (X.norm() * (U @ Vh).norm())
        assert cosine > 0.99


def test_normuon_evens_out_neurons_and_keeps_the_update_norm():
    from models.optimisation.muon import normuon_scale

    update = torch.ones(4, 8) * torch.tensor([1.0, 2.0, 4.0, 8.0])[:, None]
    second = torch.zeros(1, 8)  # a wide matrix's neurons are its columns (equal here: only the norm is checked)
    scaled = normuon_scale(update, second, beta2=0.0)
    assert torch.allclose(scaled.norm(), update.norm())  # the same total step
    tall = update.T.contiguous()  # (8, 4): neurons are rows, here of equal RMS already, so nothing changes
    assert torch.allclose(normuon_scale(tall, torch.zeros(8, 1), beta2=0.0), tall, rtol=1e-5)
    uneven = torch.randn(8, 4) * torch.arange(1.0, 9.0)[:, None]
    out = normuon_scale(uneven, torch.zeros(8, 1), beta2=0.0)
    rms = out.square().mean(dim=-1)
    assert torch.allclose(rms, rms.mean().expand(8), rtol=1e-4) and torch.allclose(out.norm(), uneven.norm())


def test_normuon_variant_trains_a_matrix_down_and_checks_its_name():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 16))
    target = torch.randn(8, 16)
    opt = Muon([w], lr=0.05, variant="normuon")
    start = (w - target).square().mean().item()
    for _ in range(100):
        opt.zero_grad()
        (w - target).square().mean().backward()
        opt.step()
    assert (w - target).square().mean().item() < 0.1 * start
    assert opt.state[w]["second_moment"].shape == (1, 16)
    # a conv weight (gcnn) is a stack of matrices, one per kernel tap: each is scaled as if it stood alone
    from models.optimisation.muon import normuon_scale

    stacked = torch.randn(3, 8, 4) * torch.tensor([1.0, 10.0, 100.0])[:, None, None]
    together = normuon_scale(stacked, torch.zeros(3, 8, 1), beta2=0.0)
    alone = torch.stack([normuon_scale(m, torch.zeros(8, 1), beta2=0.0) for m in stacked])
    assert torch.allclose(together, alone, rtol=1e-5)
    import pytest

    with pytest.raises(ValueError, match="variant 'adam'"):
        Muon([w], variant="adam")


def test_nanochat_extras_get_their_own_rates():
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_embd=32, n_head=2, n_kv_head=2, seq_len=8, vocab_size=50,
                                    tie_embeddings=False, value_embeds=True, residual_scalars=True))
    spec = OptimizerSpec("muon", 3e-3, 0.1, (0.9, 0.95), 0.02, embed_lr=0.6, head_lr=0.016,
                         embed_weight_decay=0.001, scalar_lr=0.5, muon_variant="normuon")
    adam, muon = build_optimizers(model, spec)
    rate = {id(p): (g["base_lr"], g["weight_decay"]) for g in adam.param_groups for p in g["params"]}
    decoder = model.model
    assert rate[id(decoder.embed_tokens.weight)] == (0.6, 0.001) and rate[id(model.lm_head.weight)] == (0.016, 0.001)
    assert [rate[id(t.weight)] for t in decoder.value_embeds.values()] == [(0.3, 0.001)]  # the last layer's only
    assert rate[id(decoder.x0_lambdas)] == (0.5, 0.0) and rate[id(decoder.resid_lambdas)] == (0.005, 0.0)
    assert rate[id(decoder.norm.weight)] == (3e-3, 0.0)
    gates = [b.self_attn.ve_gate.weight for b in decoder.layers if hasattr(b.self_attn, "ve_gate")]
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    assert len(gates) == 1 and id(gates[0]) in in_muon and muon.param_groups[0]["variant"] == "normuon"
