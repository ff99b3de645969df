"""Tiny Hugging Face models of each family lmforge imports, built by `transformers` with random weights, saved in
HF layout with a small BPE tokenizer and a ChatML chat template (SmolLM2's)."""

from __future__ import annotations

import json
from pathlib import Path

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
          "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXTS = ["The river carries the old letter to the village market.", "def f(x):\n    return x * 2",
         "Debian is a free operating system. Python is a programming language.", "Ünïcödé ✓ — 日本語"] * 20


def tiny_hf_tokenizer():
    """A byte-level BPE with SmolLM2's special tokens (<|endoftext|> 0, <|im_start|> 1, <|im_end|> 2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS, trainer=trainer)
    return tok


def hf_config(family: str, vocab_size: int, tie: bool = True, context: int = 64):
    import transformers

    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context, rms_norm_eps=1e-5,
                  tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2)
    if family == "llama":
        return transformers.LlamaConfig(**common, rope_theta=5000.0)
    if family == "mistral":
        return transformers.MistralConfig(**common, rope_theta=5000.0, sliding_window=None)
    if family == "qwen2":
        return transformers.Qwen2Config(**common, rope_theta=5000.0, use_sliding_window=False)
    if family == "qwen3":  # head_dim wider than hidden / heads, as in Qwen3
        return transformers.Qwen3Config(**common, head_dim=32, rope_theta=5000.0, use_sliding_window=False)
    raise ValueError(family)


def save_tiny_hf_model(out: Path, family: str, tie: bool = True, seed: int = 0, context: int = 64):
    """Write a random tiny `family` model (norms and biases randomised too) and its tokenizer to `out`; returns the
    transformers model."""
    import torch
    import transformers

    tok = tiny_hf_tokenizer()
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(hf_config(family, tok.get_vocab_size(), tie, context))
    with torch.no_grad():  # zero-init biases and unit norms would hide a weight that was not loaded
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.eval().save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
              "pad_token": "<|im_end|>", "chat_template": CHATML, "add_bos_token": False}
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    return model
