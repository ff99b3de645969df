"""Int8 serving weights (`models.inference.quantize`): the linear layers quantized but those reading the MLP's hidden
activations, the embedding table kept in float32 even when the head shares it, answers close to float32's."""

from __future__ import annotations

import pytest
import torch
from test_decoding import greedy, random_model

from models.inference.quantize import int8_layers, quantize_linear_int8


@pytest.mark.parametrize("tied", [True, False])
def test_linears_but_the_mlp_down_projections_are_int8_and_the_embedding_stays_float32(tied):
    model = random_model("gpt", n_embd=64, tie_embeddings=tied)
    table = model.model.embed_tokens.weight.detach().clone()
    expected = {name for name, _ in model.named_modules() if name.endswith(("proj", "lm_head"))}
    expected -= {name for name in expected if name.endswith("down_proj")}
    assert set(int8_layers(model)) == expected
    quantize_linear_int8(model)
    layers = dict(model.named_modules())
    assert all(isinstance(layers[name], torch.ao.nn.quantized.dynamic.Linear) for name in expected)
    assert all(type(layers[f"model.layers.{i}.mlp.down_proj"]) is torch.nn.Linear for i in range(2))
    per_channel = (torch.per_channel_affine, torch.per_channel_symmetric)
    assert all(layers[name].weight().qscheme() in per_channel for name in expected)
    assert model.model.embed_tokens.weight.dtype == torch.float32
    assert torch.equal(model.model.embed_tokens.weight, table)  # untying the head copied it, never quantized it


def test_each_int8_layer_computes_what_its_float32_layer_computes_within_int8_error():
    reference = random_model("gpt", n_embd=64)
    quantized = quantize_linear_int8(random_model("gpt", n_embd=64))  # same seed, same weights
    pairs = [(name, m) for name, m in reference.named_modules() if name in int8_layers(reference)]
    layers = dict(quantized.named_modules())
    g = torch.Generator().manual_seed(3)
    for name, linear in pairs:
        x = torch.randn(8, linear.in_features, generator=g)
        exact, approx = linear(x), layers[name](x)
        # 8-bit weights per channel and 7-bit activations per tensor (fbgemm): about 1 % of the output's norm
        assert (exact - approx).norm() < 0.03 * exact.norm(), name


def test_int8_tiny_model_still_predicts_like_float32():
    from lm_fixtures import tiny_gpt

    idx = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = tiny_gpt(97)(idx)[0], quantize_linear_int8(tiny_gpt(97))(idx)[0]
    # a random tiny model's logits are nearly flat, so a small error flips some top tokens; a broken head flips all
    assert (a - b).norm() < 0.2 * a.norm()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.6


def test_quantizing_a_model_off_the_cpu_is_refused_with_the_reason():
    model = random_model("gpt").to("meta")
    with pytest.raises(ValueError, match="CPU serving path"):
        quantize_linear_int8(model)
