"""HF export: transformers loads it and its logits match ours; the tokenizer and chat template match too."""

from pathlib import Path

import pytest
import torch
from lm_fixtures import tiny_tokenizer, write_checkpoint

from models.text.chat import encode_chat, render_chat
from tasks.registry.export import export_hf

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def random_model(vocab_size: int, qk_norm: bool, tie: bool):
    from models.architectures.registry import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, seq_len=32, vocab_size=vocab_size,
                      qk_norm=qk_norm, tie_embeddings=tie, rope_theta=5000.0, norm_eps=1e-5)
    model = build_model(cfg)
    with torch.no_grad():  # random everything, norms included: zero-init outputs and unit norms hide mistakes
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize(("qk_norm", "tie"), [(False, True), (False, False), (True, True), (True, False)])
def test_transformers_logits_match(tokenizer, tmp_path: Path, qk_norm: bool, tie: bool):
    model = random_model(tokenizer.vocab_size, qk_norm, tie)
    step_dir = write_checkpoint(tmp_path / "ckpt", model, tokenizer)
    out = export_hf(str(step_dir), tmp_path / "hf")

    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(hf).__name__ == ("Qwen3ForCausalLM" if qk_norm else "LlamaForCausalLM")
    assert hf.config.tie_word_embeddings == tie
    idx = torch.randint(0, tokenizer.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = model(idx)
        theirs = hf(idx).logits
    assert (ours - theirs).abs().max().item() < 1e-4


def test_tokenizer_and_chat_template_match(tokenizer, tmp_path: Path):
    model = random_model(tokenizer.vocab_size, qk_norm=False, tie=True)
    out = export_hf(str(write_checkpoint(tmp_path / "ckpt", model, tokenizer)), tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "Debian is a free operating system."
    assert hf_tok.encode(text, add_special_tokens=False) == tokenizer.encode(text)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is Debian?"}]
    assert hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == render_chat(messages)
    ids = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert list(ids) == encode_chat(tokenizer, messages)[0]
    generation = transformers.GenerationConfig.from_pretrained(out)
    assert tokenizer.token_to_id("<|end|>") in generation.eos_token_id
    assert hf_tok.pad_token == "<|pad|>" and hf_tok.bos_token == "<|bos|>"


@pytest.mark.parametrize("option", [{"mlp": "relu2"}, {"logit_softcap": 15.0}, {"embed_norm": True},
                                    {"value_embeds": True}, {"residual_scalars": True}])
def test_export_refuses_what_transformers_cannot_compute(tokenizer, tmp_path: Path, option: dict):
    from models.architectures.registry import ModelConfig, build_model

    cfg = ModelConfig(n_layer=1, n_embd=32, n_head=2, n_kv_head=2, seq_len=16, vocab_size=tokenizer.vocab_size,
                      **option)
    step_dir = write_checkpoint(tmp_path / "ckpt", build_model(cfg), tokenizer)
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"model.{name}=.*cannot compute these options.*{name}="):
        export_hf(str(step_dir), tmp_path / "hf")


def test_export_refuses_unrelated_directories(tokenizer, tmp_path: Path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    model = random_model(tokenizer.vocab_size, qk_norm=False, tie=True)
    step_dir = write_checkpoint(tmp_path / "ckpt", model, tokenizer)
    with pytest.raises(FileExistsError, match="not an earlier export"):
        export_hf(str(step_dir), tmp_path / "mine")
    with pytest.raises(FileNotFoundError, match="not a checkpoint dir"):
        export_hf(str(tmp_path / "mine"), tmp_path / "hf")
    export_hf(str(step_dir), tmp_path / "hf")
    export_hf(str(step_dir), tmp_path / "hf")  # an earlier export is replaced
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == sorted(
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "generation_config.json"])
