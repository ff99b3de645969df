"""Optimizer groups of the nanochat recipe: embedding and head lrs, Muon's momentum ramp, cautious weight decay."""

from __future__ import annotations

import torch

from models.gpt import ModelConfig, build_model
from models.muon import Muon, build_optimizers, muon_momentum


def tiny(tie: bool):
    torch.manual_seed(0)
    return build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2, n_kv_head=2, seq_len=8, vocab_size=50,
                                   tie_embeddings=tie))


def test_untied_embedding_and_head_get_their_own_lrs_and_muon_the_block_matrices():
    model = tiny(tie=False)
    adam, muon = build_optimizers(model, "muon", 3e-3, 0.1, (0.9, 0.95), 0.02, False, embed_lr=0.6, head_lr=0.016)
    lr_of = {id(p): g["base_lr"] for g in adam.param_groups for p in g["params"]}
    assert lr_of[id(model.model.embed_tokens.weight)] == 0.6 and lr_of[id(model.lm_head.weight)] == 0.016
    assert lr_of[id(model.model.norm.weight)] == 3e-3
    blocks = {id(p) for g in muon.param_groups for p in g["params"]}
    assert id(model.model.layers[0].mlp.up_proj.weight) in blocks and not blocks & set(lr_of)
    # a tied matrix is both: it keeps the shared lr
    tied = tiny(tie=True)
    (adam,) = build_optimizers(tied, "adamw", 3e-3, 0.1, (0.9, 0.95), 0.02, False, embed_lr=0.6, head_lr=0.016)
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
