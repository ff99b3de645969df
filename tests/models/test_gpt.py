"""The GPT model: shapes, causality, KV-cache generation, sampling filters and the Hugging Face layout."""

from __future__ import annotations

import pytest
import torch

from models.architectures.registry import ModelConfig, build_model
from models.decoding.sampling import sample_next


def make(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        **{"n_layer": 2, "n_embd": 64, "n_head": 4, "n_kv_head": 2, "seq_len": 32, "vocab_size": 97, **overrides}
    )
    model = build_model(cfg)
    with torch.no_grad():  # zero-initialised output projections would make attention invisible to these tests
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_forward_shapes_and_loss():
    model = make()
    idx = torch.randint(0, 97, (3, 16))
    logits, loss = model(idx)
    assert logits.shape == (3, 16, 97) and logits.dtype == torch.float32 and loss is None
    targets = idx.clone()
    targets[:, :8] = -1  # ignored positions must not count
    _, loss = model(idx, targets)
    expected = torch.nn.functional.cross_entropy(logits[:, 8:].reshape(-1, 97), idx[:, 8:].reshape(-1))
    assert torch.allclose(loss, expected, atol=1e-6)


# the options HF Llama lacks
NANOCHAT_OPTIONS = {"mlp": "relu2", "logit_softcap": 15.0, "embed_norm": True, "value_embeds": True,
                    "residual_scalars": True}


@pytest.mark.parametrize("options", [{"qk_norm": False}, {"qk_norm": True}, NANOCHAT_OPTIONS])
def test_future_token_cannot_change_past_logits(options):
    model = make(**options)
    idx = torch.randint(0, 97, (2, 20))
    changed = idx.clone()
    changed[:, 12] = (changed[:, 12] + 1) % 97
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.equal(a[:, :12], b[:, :12])
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-4  # and the change is visible from position 12 on


@pytest.mark.parametrize("options", [{}, NANOCHAT_OPTIONS])
def test_kv_cache_generation_matches_full_recompute(options):
    model = make(**options)
    prompt = torch.randint(0, 97, (2, 5))
    fast = model.generate(prompt, 40, temperature=0)  # 45 tokens: runs past seq_len, within the RoPE table
    slow = prompt
    for _ in range(40):
        logits, _ = model(slow)
        slow = torch.cat([slow, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert fast.shape == (2, 45) and torch.equal(fast, slow)


def test_generation_past_the_cache_and_eos_stop():
    model = make(seq_len=8)  # RoPE table of 32 positions: 60 new tokens force a cache restart
    out = model.generate(torch.zeros(1, 3, dtype=torch.long), 60, temperature=1.0, top_k=5)
    assert out.shape == (1, 63)
    first = model.generate(torch.zeros(1, 3, dtype=torch.long), 1, temperature=0)[0, -1].item()
    stopped = model.generate(torch.zeros(1, 3, dtype=torch.long), 20, temperature=0, eos_id=first)
    assert stopped.shape == (1, 4)


def test_top_k_and_top_p_restrict_the_candidates():
    torch.manual_seed(0)
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]]).repeat(200, 1)
    assert set(sample_next(logits, 1.0, 2, None).flatten().tolist()) <= {0, 1}
    # softmax: p0 ≈ 0.71, p1 ≈ 0.26 → top_p 0.5 keeps only token 0
    assert set(sample_next(logits, 1.0, None, 0.5).flatten().tolist()) == {0}
    assert set(sample_next(logits, 0.0, None, None).flatten().tolist()) == {0}


def test_parameter_names_follow_hf_llama_and_tying():
    model = make(qk_norm=True, tie_embeddings=True)
    names = set(model.state_dict())
    for name in (
        "model.embed_tokens.weight",
        "model.norm.weight",
        "lm_head.weight",
        "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_norm.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.post_attention_layernorm.weight",
    ):
        assert name in names
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (2 * 16, 64)  # n_kv_head * head_dim
    assert not any("bias" in n for n in names)
    fresh = build_model(ModelConfig(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, vocab_size=97))
    assert fresh.model.layers[0].mlp.down_proj.weight.abs().sum() == 0  # zero-init output projections


def test_nanochat_options_shape_the_model_and_cap_the_logits():
    model = make(**NANOCHAT_OPTIONS)
    mlp = model.model.layers[0].mlp
    assert not hasattr(mlp, "gate_proj") and mlp.up_proj.weight.shape == (4 * 64, 64)  # ReLU^2 at 4 d, no gate
    assert not model.config.hf_compatible and make().config.hf_compatible
    with torch.no_grad():
        model.lm_head.weight.mul_(1000)
    logits, _ = model(torch.randint(0, 97, (1, 8)))
    assert logits.abs().max() <= 15.0


def test_bad_config_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="n_kv_head"):
        ModelConfig(n_embd=64, n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="vocab_size"):
        build_model(ModelConfig())
    with pytest.raises(ValueError):
        ModelConfig(unknown_field=1)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_logits_match_hugging_face(qk_norm):
    transformers = pytest.importorskip("transformers")
    model = make(qk_norm=qk_norm, tie_embeddings=not qk_norm)
    c = model.config
    common = dict(
        vocab_size=c.vocab_size,
        hidden_size=c.n_embd,
        intermediate_size=c.hidden_dim,
        num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head,
        num_key_value_heads=c.n_kv_head,
        max_position_embeddings=4 * c.seq_len,
        rms_norm_eps=c.norm_eps,
        rope_theta=c.rope_theta,
        tie_word_embeddings=c.tie_embeddings,
        head_dim=c.head_dim,
    )
    if qk_norm:
        hf = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**common, attention_bias=False))
    else:
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, attention_bias=False, mlp_bias=False))
    missing, unexpected = hf.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    hf.eval()
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        ours, _ = model(idx)
        theirs = hf(idx).logits
    assert torch.allclose(ours, theirs.float(), atol=1e-4), (ours - theirs).abs().max()


def test_activation_checkpointing_gives_the_same_gradients():
    model = make().train()
    idx = torch.randint(0, 97, (2, 16))
    model(idx, idx)[1].backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.grad_checkpointing = True
    model(idx, idx)[1].backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(plain, model.parameters()))
