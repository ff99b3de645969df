"""Export to Hugging Face format: an lmforge checkpoint or registered model as a directory `transformers` loads.

`export_hf(source, out)` writes what `AutoModelForCausalLM.from_pretrained(out)` and `AutoTokenizer.from_pretrained
(out)` need, which is also what vLLM serves and llama.cpp's `convert_hf_to_gguf.py` converts:
- `config.json`: `LlamaForCausalLM`, or `Qwen3ForCausalLM` when the model uses QK-norm; RoPE given both as
  `rope_theta` (transformers 4.x, vLLM, llama.cpp) and `rope_parameters` (transformers 5);
- `model.safetensors`: our state dict already uses HF names and layouts (`models.architectures.gpt`); a tied output head
is stored
  once, as HF expects with `tie_word_embeddings`;
- `tokenizer.json` (the byte-level BPE as trained), `tokenizer_config.json` with our special tokens and a Jinja
  chat template equal to `models.text.chat.render_chat`, `special_tokens_map.json`;
- `generation_config.json`: stops on `<|end|>` (end of an assistant turn) and `<|eos|>`.
`source` is a checkpoint dir (`step_*`), a train/SFT stage dir, or a registry URI `models:/name@alias` /
`models:/name/version` (the checkpoint packaged in the registered pyfunc model is downloaded).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from models.text.chat import BOS_TOKEN
from models.text.tokenizer import EOS, PAD, SPECIAL_TOKENS
from tasks.core.tracking import TrackingConfig
from tasks.registry.resolve import resolve_checkpoint

EXPORT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "generation_config.json")


def hf_config(model: dict[str, Any], tokenizer) -> dict[str, Any]:
    """config.json for an lmforge `ModelConfig` (as a dict, from the checkpoint sidecar)."""
    from models.architectures.registry import ModelConfig

    cfg = ModelConfig.model_validate(model)
    if cfg.arch != "gpt":
        raise ValueError(f"export: model.arch={cfg.arch!r} has no transformers counterpart; only 'gpt' exports")
    if cfg.qk_norm and cfg.attn_bias:
        raise ValueError("export: QK-norm with q/k/v biases has no transformers counterpart (Qwen3 or Qwen2, not both)")
    if not cfg.hf_compatible:
        from models.architectures.registry import HF_INCOMPATIBLE

        options = ", ".join(f"model.{k}={v!r}" for k, v in cfg.incompatible_options.items())
        fix = ", ".join(f"{k}={HF_INCOMPATIBLE[k]!r}" for k in cfg.incompatible_options)
        raise ValueError(
            f"export: {options}: transformers' Llama/Qwen classes cannot compute these options; train with {fix} to "
            "export (README, Training recipe)"
        )
    family = "qwen3" if cfg.qk_norm else "qwen2" if cfg.attn_bias else "llama"
    qwen = family != "llama"
    config = {
        "architectures": [{"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[family]],
        "model_type": family,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": cfg.attn_bias,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "float32",
        "bos_token_id": token_id(tokenizer, special_tokens(tokenizer)["bos_token"]),
        "eos_token_id": stop_ids(tokenizer),
        "pad_token_id": tokenizer.pad_id,
    }
    if qwen:
        config |= {"use_sliding_window": False, "sliding_window": None, "max_window_layers": cfg.n_layer}
    else:
        config |= {"mlp_bias": False, "pretraining_tp": 1}
    return config


def token_id(tokenizer, token: str | None) -> int | None:
    return None if token is None else tokenizer.token_to_id(token)


def stop_ids(tokenizer) -> list[int]:
    """Where generation stops: the template's end of turn, then eos (one id when they are the same token)."""
    return list(dict.fromkeys([tokenizer.chat_template.end_of_turn_id, tokenizer.eos_id]))


def special_tokens(tokenizer) -> dict[str, Any]:
    """special_tokens_map.json: lmforge's tokens for a tokenizer trained here, a base model's own otherwise."""
    spec = tokenizer.spec
    if spec is None:
        return {"bos_token": BOS_TOKEN, "eos_token": EOS, "pad_token": PAD,
                "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (BOS_TOKEN, EOS, PAD)]}
    return {"bos_token": spec.bos_token, "eos_token": spec.eos_token, "pad_token": spec.pad_token}


def tokenizer_files(tokenizer, seq_len: int) -> dict[str, dict[str, Any]]:
    """tokenizer_config.json and special_tokens_map.json for `PreTrainedTokenizerFast`."""
    special = special_tokens(tokenizer)
    added = {str(i): {"content": tokenizer.id_to_token(i), "lstrip": False, "rstrip": False, "normalized": False,
                      "single_word": False, "special": True} for i in sorted(tokenizer.special_ids)}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": seq_len, "unk_token": None,
              "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
              "chat_template": tokenizer.chat_template.source, "added_tokens_decoder": added, **special}
    if tokenizer.spec is not None:  # read back by `lmforge import` of this export: the same document separator
        config["document_token"] = tokenizer.spec.document_token
    return {"tokenizer_config.json": config, "special_tokens_map.json": special}


def export_hf(source: str, out: Path, tracking: TrackingConfig | None = None) -> Path:
    """Write the HF-format export of `source` into `out` (replacing an earlier export there); returns `out`."""
    from safetensors.torch import load_file, save_file

    from models.text.tokenizer import Tokenizer
    from models.weights import checkpoint as ckpt
    from models.weights.checkpoint import read_sidecar

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise FileExistsError(f"export: {out} is a non-empty directory that is not an earlier export; pick another")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lmforge-export-") as download:
        checkpoint = resolve_checkpoint(source, Path(download), tracking)
        sidecar = read_sidecar(checkpoint)
        tokenizer = Tokenizer.load(checkpoint / ckpt.TOKENIZER)
        config = hf_config(sidecar["model"], tokenizer)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        weights = load_file(str(checkpoint / ckpt.WEIGHTS))
        if config["tie_word_embeddings"]:
            weights.pop("lm_head.weight", None)
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        shutil.copyfile(checkpoint / ckpt.TOKENIZER, tmp / "tokenizer.json")
        files = {"config.json": config, **tokenizer_files(tokenizer, config["max_position_embeddings"])}
        files["generation_config.json"] = {
            "bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
            "pad_token_id": config["pad_token_id"], "do_sample": True, "temperature": 0.7, "top_k": 50,
        }
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)  # the export appears complete or not at all
    return out
