"""Sequence classification on a pretrained lmforge language model: the head, its checkpoint and its MLflow pyfunc.

`SequenceClassifier` wraps any arch of `models.architectures.registry.build_model`: the base's output head is replaced
by the identity, so its forward returns the final-norm hidden states (B, T, C), which are pooled — the mean over real
tokens, or the last real token, which in a causal model has seen the whole text — and fed to a linear head over the
labels. A classifier directory holds `classifier.safetensors` (base + head weights), `classifier.json` (base model
config, labels, pooling, max length) and `tokenizer.json`. The registered pyfunc
(`models/packaging/classifier_entry.py`, kept apart so training does not import MLflow) wraps `predict_proba` and
`as_texts`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from models.weights.checkpoint import copy_tokenizer

WEIGHTS, CONFIG, TOKENIZER = "classifier.safetensors", "classifier.json", "tokenizer.json"
Pooling = Literal["mean", "last"]


class SequenceClassifier(nn.Module):
    def __init__(self, base: nn.Module, n_labels: int, pooling: Pooling = "mean", dropout: float = 0.1):
        super().__init__()
        if not hasattr(base, "lm_head"):
            raise ValueError(f"{type(base).__name__} has no lm_head to replace; classification needs an lmforge arch")
        base.lm_head = nn.Identity()  # the base now returns hidden states (B, T, C) in place of logits
        self.base, self.pooling = base, pooling
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(base.config.n_embd, n_labels)
        nn.init.zeros_(self.head.weight)  # start from uniform predictions: no label favoured by initial noise
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """idx (B, T) right-padded, lengths (B,) real tokens per row -> logits (B, n_labels)."""
        hidden, _ = self.base(idx)  # (B, T, C); causal, so padding after a row's end does not change its states
        if self.pooling == "last":
            pooled = hidden[torch.arange(idx.size(0), device=idx.device), lengths - 1]  # (B, C)
        else:
            mask = (torch.arange(idx.size(1), device=idx.device)[None, :] < lengths[:, None]).to(hidden.dtype)
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, C)
        return self.head(self.drop(pooled))


def encode_batch(tokenizer: Any, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`<|bos|>` + tokens, cut to max_len, right-padded: (idx (B, T), lengths (B,))."""
    rows = [[tokenizer.bos_id, *tokenizer.encode(text)][:max_len] for text in texts]
    idx = torch.full((len(rows), max(len(r) for r in rows)), tokenizer.pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        idx[i, : len(row)] = torch.tensor(row)
    return idx, torch.tensor([len(r) for r in rows])


def save_classifier(model: SequenceClassifier, meta: dict[str, Any], tokenizer_file: Path, out: Path) -> Path:
    """Write a classifier directory (weights, config with labels, tokenizer) to `out`."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    seen, state = set(), {}
    for name, tensor in model.state_dict().items():  # safetensors refuses shared storage; the base has none now
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            state[name] = tensor.detach().cpu().contiguous()
    save_file(state, str(out / WEIGHTS))
    (out / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True))
    copy_tokenizer(tokenizer_file, out)
    return out


def load_classifier(path: Path | str, device: str = "cpu") -> tuple[SequenceClassifier, Any, dict[str, Any]]:
    """(classifier in eval mode, tokenizer, config dict) from a classifier directory."""
    from safetensors.torch import load_file

    from models.architectures.registry import ModelConfig, build_model
    from models.text.tokenizer import Tokenizer

    path = Path(path)
    if not (path / CONFIG).is_file():
        raise FileNotFoundError(f"{path / CONFIG} missing: {path} is not an lmforge classifier directory")
    meta = json.loads((path / CONFIG).read_text())
    base = build_model(ModelConfig.model_validate(meta["model"]))
    model = SequenceClassifier(base, len(meta["labels"]), meta["pooling"])
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    return model.to(device).eval(), Tokenizer.load(path / TOKENIZER), meta


@torch.no_grad()
def predict_proba(
    model: SequenceClassifier, tokenizer: Any, texts: list[str], max_len: int, batch_size: int = 32
) -> torch.Tensor:
    """Class probabilities (N, n_labels) for `texts`."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        idx, lengths = encode_batch(tokenizer, texts[start : start + batch_size], max_len)
        out.append(model(idx.to(device), lengths.to(device)).float().softmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, len(model.head.bias))


def as_texts(model_input: Any) -> list[str]:
    """Texts from what a pyfunc caller may send: a DataFrame/dict with `text`, a list of strings, or one string."""
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):
        if "text" not in model_input.columns:
            raise ValueError(f"classifier input needs a 'text' column; got columns {list(model_input.columns)}")
        return [str(t) for t in model_input["text"].tolist()]
    if isinstance(model_input, dict):
        text = model_input.get("text")
        if text is None:
            raise ValueError("classifier input needs a 'text' field")
        return [text] if isinstance(text, str) else [str(t) for t in text]
    return [str(t) for t in model_input]
