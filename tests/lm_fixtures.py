"""Tiny language models for the evaluate / register / pyfunc / serve tests: a trained-in-process tokenizer, a
2-layer GPT, a uniform model (every token equally likely, so bits per byte is known by hand) and a model that
memorised some texts (so benchmark scoring must pick the memorised answer)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.decoding.decoders import Decoding, RecurrentDecoder

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Debian is a free operating system made by volunteers around the world.",
    "Python has a large standard library; import json to read JSON files.",
    "A model card records the data, the training budget and the known risks.",
]


def tiny_tokenizer(vocab_size: int = 320):
    from models.text.tokenizer import Tokenizer

    return Tokenizer.train(CORPUS * 4, vocab_size=vocab_size, min_frequency=1)


def tiny_gpt(vocab_size: int, seq_len: int = 64, seed: int = 0):
    from models.architectures.registry import ModelConfig, build_model

    torch.manual_seed(seed)
    cfg = ModelConfig(n_layer=2, n_embd=32, n_head=2, n_kv_head=2, seq_len=seq_len, vocab_size=vocab_size)
    model = build_model(cfg)
    with torch.no_grad():  # the zero-initialised output projections would make every model alike
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


class _Config:
    def __init__(self, seq_len: int):
        self.seq_len = seq_len


def logits_or_loss(logits: torch.Tensor, targets: torch.Tensor | None, reduction: str = "mean"):
    """What every lmforge model returns: (logits, None), or with targets (None, mean cross-entropy over targets
    != -1; per position (B, T), 0 where not scored, with reduction="none"), as `models.architectures.gpt.GPT.forward`
    does."""
    if targets is None:
        return logits, None
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1,
                                             reduction=reduction)
    return None, loss.view(targets.shape) if reduction == "none" else loss


class UniformLM(nn.Module):
    """Logits all zero: every token has probability 1/V, so a text of n tokens costs exactly n·ln V nats."""

    def __init__(self, vocab_size: int, seq_len: int = 16):
        super().__init__()
        self.vocab_size, self.config = vocab_size, _Config(seq_len)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"):
        return logits_or_loss(torch.zeros(*idx.shape, self.vocab_size), targets, reduction)


class MemorisedLM(nn.Module):
    """A model that memorised some token sequences: wherever the input so far is a prefix of one, it puts almost all
    probability on that sequence's next token; elsewhere it is uniform."""

    def __init__(self, sequences: list[list[int]], vocab_size: int, seq_len: int = 256):
        super().__init__()
        self.sequences, self.vocab_size, self.config = sequences, vocab_size, _Config(seq_len)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"):
        logits = torch.zeros(*idx.shape, self.vocab_size)  # (B, T, V)
        for b, row in enumerate(idx.tolist()):
            for seq in self.sequences:
                t = 0
                while t < len(row) and t + 1 < len(seq) and row[t] == seq[t]:
                    logits[b, t, seq[t + 1]] = 20.0
                    t += 1
        return logits_or_loss(logits, targets, reduction)


class ScriptedLM(nn.Module):
    """Generates a fixed token script, whatever the prompt: lets the engine's stop logic be checked exactly."""

    decoding = Decoding(RecurrentDecoder)  # recurrent-style (see forward), one sequence at a time

    def __init__(self, script: list[int], seq_len: int = 64):
        super().__init__()
        self.script, self.anchor = script, nn.Parameter(torch.zeros(1))
        self.config = type("Cfg", (), {"seq_len": seq_len})()
        self.prompt_len, self.last = 0, None

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, state: list | None = None):
        """Recurrent-style, as the chat engine decodes: `state` counts the tokens generated since the prompt."""
        if state is None:
            raise ValueError("ScriptedLM decodes incrementally only: pass state=[] for a new prompt")
        n = state[0] + 1 if state else 0
        state[:] = [n]
        logits = torch.zeros(idx.size(0), idx.size(1), max(self.script) + 1)
        logits[:, -1, self.script[min(n, len(self.script) - 1)]] = 100.0
        return logits, None

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None):
        if self.last is None or not torch.equal(idx, self.last):  # a new request: restart the script
            self.prompt_len = idx.size(1)
        for _ in range(max_new_tokens):
            n = min(idx.size(1) - self.prompt_len, len(self.script) - 1)
            idx = torch.cat([idx, torch.tensor([[self.script[n]]])], dim=1)
            if self.script[n] == eos_id:
                break
        self.last = idx
        return idx


def write_checkpoint(out: Path, model, tokenizer, step: int = 10) -> Path:
    """A checkpoint dir `out/step_000010/` written by the train stage's own writer."""
    from models.weights.checkpoint import save_checkpoint

    tok_file = tokenizer.save(out / "tokenizer-src.json")
    sidecar = {"model": model.config.model_dump(), "tokenizer": {"sha256": tokenizer.sha256}}
    return save_checkpoint(out, step, model, {"step": step}, sidecar, tok_file)


def checkpoint_ref(ckpt_dir: Path, model, step: int = 10):
    """The CheckpointRef the train stage would hand on for `ckpt_dir`."""
    from tasks.core.artifacts import CheckpointRef

    return CheckpointRef(
        path=str(ckpt_dir.parent), checkpoint=ckpt_dir.name, tokenizer_file=str(ckpt_dir / "tokenizer.json"),
        step=step, n_params=model.num_params(), tokens_seen=1000, train_seconds=1.0, final_train_loss=3.0,
    )
