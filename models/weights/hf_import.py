"""Open weights in: a pretrained Llama-family model as an lmforge `gpt` model, with its own tokenizer and template.

`load_pretrained(source)` reads a Hugging Face hub id (downloaded with `huggingface_hub`), a local directory in HF
layout (`config.json`, `*.safetensors`, `tokenizer.json`, `tokenizer_config.json`) or a GGUF file (dequantized by
`transformers`, which also rebuilds its tokenizer and chat template from the GGUF metadata). `model_config_from_hf`
maps the HF config onto `models.architectures.registry.ModelConfig` (Llama 2/3 without RoPE scaling, SmolLM/SmolLM2,
Mistral without a sliding window, Qwen2/2.5 with q/k/v biases, Qwen3 with QK-norm); a field that does not map raises
naming it. The state dict needs no renaming: `models.architectures.gpt` uses HF's names and layouts (the inverse of
`tasks.registry.export`). Weights load from safetensors only: a checkpoint shipped as pickled `.bin` files is refused,
never unpickled.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.architectures.registry import ModelConfig
from models.text.tokenizer import Tokenizer, TokenizerSpec
from models.weights.files import file_sha256

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
# What a hub download fetches: the config, the weights, the tokenizer and the model card (its licence).
HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "chat_template.jinja", "chat_template.json", "generation_config.json",
             "README.md", "LICENSE*"]
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class PretrainedError(ValueError):
    """The source is not something lmforge can import; the message names the field or file and what to do."""


@dataclass
class Pretrained:
    """A pretrained model read from its source: lmforge config, HF-named weights, tokenizer, provenance."""

    config: ModelConfig
    state: dict[str, Any]  # parameter name -> tensor (float32), HF names
    tokenizer: Tokenizer
    source: dict[str, Any] = field(default_factory=dict)  # kind, id, revision / sha256, licence
    hf_config: dict[str, Any] = field(default_factory=dict)


def _rope_theta(config: dict[str, Any]) -> float:
    rope = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type")) or rope.get("rope_type", "default")
    if kind not in ("default", None):
        raise PretrainedError(f"config.json rope_scaling/rope_type={kind!r}: only plain RoPE maps onto "
                              "models.architectures.gpt (Llama 3.1+ 'llama3' or YaRN scaling is not implemented)")
    theta = config.get("rope_theta", rope.get("rope_theta"))
    if theta is None:
        raise PretrainedError("config.json has no rope_theta (nor rope_parameters.rope_theta)")
    return float(theta)


def model_config_from_hf(config: dict[str, Any]) -> ModelConfig:
    """The `ModelConfig` of an HF causal-LM config (a dict of config.json); raises naming a field that does not map."""
    family = config.get("model_type")
    if family not in FAMILIES:
        raise PretrainedError(f"config.json model_type={family!r}: lmforge imports {', '.join(FAMILIES)} "
                           "(decoder-only, RoPE, RMSNorm, SwiGLU)")
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise PretrainedError(f"config.json hidden_act={act!r}: models.architectures.gpt's MLP is SwiGLU (silu)")
    if config.get("mlp_bias"):
        raise PretrainedError("config.json mlp_bias=true: models.architectures.gpt's MLP has no biases")
    sliding = config.get("sliding_window") if family == "mistral" else (
        config.get("sliding_window") if config.get("use_sliding_window") else None)
    if sliding is not None and sliding < config.get("max_position_embeddings", 0):
        raise PretrainedError(f"config.json sliding_window={sliding}: models.architectures.gpt attends to the "
                              "whole context")
    n_embd, n_head = int(config["hidden_size"]), int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or n_embd // n_head)
    attn_bias = family == "qwen2" or bool(config.get("attention_bias", False))
    if family == "qwen3" and config.get("attention_bias"):
        raise PretrainedError("config.json attention_bias=true with qwen3's QK-norm has no "
                              "models.architectures.gpt layout")
    return ModelConfig(
        arch="gpt",
        n_layer=int(config["num_hidden_layers"]),
        n_embd=n_embd,
        n_head=n_head,
        n_kv_head=int(config.get("num_key_value_heads") or n_head),
        intermediate_size=int(config["intermediate_size"]),
        seq_len=int(config.get("max_position_embeddings", 2048)),
        vocab_size=int(config["vocab_size"]),
        qk_norm=family == "qwen3",
        attn_bias=attn_bias,
        head_size=head_dim if head_dim != n_embd // n_head else 0,
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=_rope_theta(config),
        norm_eps=float(config.get("rms_norm_eps", 1e-6)),
    )


def gpt_state(state: dict[str, Any], cfg: ModelConfig) -> dict[str, Any]:
    """HF weights as `models.architectures.gpt.GPT` loads them: float32, without RoPE buffers, a tied head stored
    once."""
    import torch

    out = {}
    for name, tensor in state.items():
        if name.endswith("rotary_emb.inv_freq") or (cfg.tie_embeddings and name == "lm_head.weight"):
            continue
        out[name] = tensor.to(torch.float32).contiguous()
    return out


def build_gpt(cfg: ModelConfig, state: dict[str, Any]):
    """A `GPT` holding `state`; raises naming the weights that are missing or left over."""
    import torch

    from models.architectures.gpt import GPT, rope_tables

    with torch.device("meta"):  # no random init of weights about to be replaced
        model = GPT(cfg)
    missing, unexpected = model.load_state_dict(gpt_state(state, cfg), strict=False, assign=True)
    missing = [m for m in missing if not (m == "lm_head.weight" and cfg.tie_embeddings)]
    if missing or unexpected:
        raise PretrainedError(f"weights do not match config.json: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if cfg.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.rope_cos, model.rope_sin = rope_tables(cfg)  # buffers that were on the meta device
    return model.eval()


def document_token(hf_tokenizer, config: dict[str, Any]) -> str:
    """What separates documents in token shards: the config's own choice, else `<|endoftext|>` where the vocabulary
    has it (SmolLM2, Qwen, GPT-2 families), else bos (Llama), else eos."""
    if config.get("document_token"):
        return config["document_token"]
    if hf_tokenizer.token_to_id("<|endoftext|>") is not None:
        return "<|endoftext|>"
    spec = TokenizerSpec.from_hf_config(config)
    return spec.bos_token or spec.eos_token


def tokenizer_from_files(hf_tokenizer, config: dict[str, Any], document: str | None = None) -> Tokenizer:
    return Tokenizer(hf_tokenizer, TokenizerSpec.from_hf_config(config, document or document_token(hf_tokenizer, config)))


def _read_dir_tokenizer(path: Path, document: str | None) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    if not (path / "tokenizer.json").is_file():
        raise PretrainedError(f"{path} has no tokenizer.json (a fast tokenizer): lmforge reads only that format")
    config = json.loads((path / "tokenizer_config.json").read_text()) if (path / "tokenizer_config.json").is_file() else {}
    if (path / "special_tokens_map.json").is_file():
        config = {**json.loads((path / "special_tokens_map.json").read_text()), **config}
    if not config.get("chat_template"):  # newer HF layouts keep the template in its own file
        if (path / "chat_template.jinja").is_file():
            config["chat_template"] = (path / "chat_template.jinja").read_text()
        elif (path / "chat_template.json").is_file():
            config["chat_template"] = json.loads((path / "chat_template.json").read_text())["chat_template"]
    try:
        return tokenizer_from_files(HFTokenizer.from_file(str(path / "tokenizer.json")), config, document)
    except ValueError as err:
        raise PretrainedError(f"{path}/tokenizer_config.json: {err}") from err


def card_license(path: Path) -> str | None:
    """The `license:` of a model card's YAML front matter (README.md), where there is one."""
    readme = path / "README.md"
    if not readme.is_file():
        return None
    match = re.search(r"^---\s*\n(.*?)\n---", readme.read_text(errors="replace"), re.S)
    found = re.search(r"^license:\s*(\S+)", match.group(1), re.M) if match else None
    return found.group(1).strip("'\"") if found else None


def load_dir(path: Path, document: str | None = None) -> Pretrained:
    """A local directory in Hugging Face layout (what `save_pretrained` writes, or a hub snapshot)."""
    from safetensors.torch import load_file

    if not (path / "config.json").is_file():
        raise PretrainedError(f"{path} has no config.json: not a Hugging Face model directory")
    hf_config = json.loads((path / "config.json").read_text())
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in path.glob("*.bin"))
        hint = f" (it has {pickled[:3]}: pickled weights are never loaded; convert them to safetensors)" if pickled else ""
        raise PretrainedError(f"{path} has no *.safetensors weights{hint}")
    state: dict[str, Any] = {}
    for file in files:
        state.update(load_file(str(file)))
    cfg = model_config_from_hf(hf_config)
    digest = hashlib.sha256()
    for file in files:
        digest.update(file_sha256(file).encode())
    source = {"kind": "directory", "id": str(path), "sha256": digest.hexdigest(), "license": card_license(path)}
    return Pretrained(cfg, state, _read_dir_tokenizer(path, document), source, hf_config)


def gguf_license(path: Path) -> str | None:
    """`general.license` from a GGUF file's metadata, where it is set."""
    from gguf import GGUFReader

    value = GGUFReader(str(path)).fields.get("general.license")
    return bytes(value.parts[value.data[0]]).decode("utf-8") if value is not None else None


def load_gguf(path: Path, document: str | None = None) -> Pretrained:
    """A GGUF file: `transformers` dequantizes its tensors (to float32) and rebuilds its tokenizer and template."""
    import torch

    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise PretrainedError("reading GGUF needs transformers, gguf and accelerate: pip install transformers gguf "
                           "accelerate") from err
    hf_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    hf_config = {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
    config = {"chat_template": hf_tok.chat_template, "bos_token": hf_tok.bos_token, "eos_token": hf_tok.eos_token,
              "pad_token": hf_tok.pad_token}
    tokenizer = tokenizer_from_files(hf_tok.backend_tokenizer, config, document)
    source = {"kind": "gguf", "id": str(path), "sha256": file_sha256(path), "license": gguf_license(path)}
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return Pretrained(model_config_from_hf(hf_config), state, tokenizer, source, hf_config)


def download(repo_id: str, revision: str | None = None) -> tuple[Path, str]:
    """A hub snapshot (safetensors, config, tokenizer, card) in the HF cache: (its directory, the commit)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES))
    except (OSError, HfHubHTTPError) as err:
        raise PretrainedError(f"cannot download {repo_id!r} from the Hugging Face hub ({type(err).__name__}): without "
                           "a network, import a local directory or GGUF file instead (lmforge import PATH)") from err
    return path, path.name  # the snapshot directory is named by its commit hash


def load_pretrained(source: str, revision: str | None = None, document: str | None = None) -> Pretrained:
    """A GGUF file, a local HF directory, or a hub id `org/name` (at `revision`), read as a `Pretrained`."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return load_gguf(path, document)
    if path.is_dir():
        return load_dir(path, document)
    if path.exists():
        raise PretrainedError(f"{source}: a file that is not .gguf; give a GGUF file, an HF model directory or a hub id")
    if not HUB_ID.match(source):
        raise PretrainedError(f"{source!r} is neither an existing path nor a hub id like 'HuggingFaceTB/SmolLM2-135M'")
    snapshot, commit = download(source, revision)
    pretrained = load_dir(snapshot, document)
    pretrained.source.update(kind="hub", id=source, revision=commit)
    return pretrained
