"""Training checkpoints: `step_000500/` directories written atomically, and loading them back.

A checkpoint directory is self-contained, so the registry can package it as is:
- `model.safetensors`: the weights (tied tensors stored once), in HF Llama/Qwen3 names for the `gpt` arch;
- `state.pt`: optimizer state, RNG states, data-loader position and step; plain tensors and containers only, loaded
  with `torch.load(weights_only=True)` (never unpickle code);
- `tokenizer.json`: a copy of the tokenizer the model was trained with (and, for a base model's tokenizer, its
  `tokenizer_config.json`: special tokens and chat template, `models.text.tokenizer.TokenizerSpec`);
- `sidecar.json`: model and train config, step, tokens seen, tokenizer sha256, data manifest sha256, git commit;
- `sharded/` (FSDP runs only): the sharded model and optimizer state written by `torch.distributed.checkpoint`, so
  a sharded run resumes exactly; `model.safetensors` still holds the full weights, gathered by rank 0.
It is written under a temporary name (`staging_dir`: `.tmp-step_000500/`) and renamed into place, so a directory
named `step_*` is always complete; `clear_staging` removes what a killed run left half-written. This module is the one
place that spells the layout: the step directory's name (`step_dir`), the staging name, the file list
(`checkpoint_files`); the stage's `CheckpointRef` is assembled from it by `tasks.core.artifacts.CheckpointRef.at`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from models.weights.files import write_json_atomic

STEP_PREFIX, STAGING_PREFIX = "step_", ".tmp-"  # step_000500/, assembled as .tmp-step_000500/
STEP_DIR = re.compile(rf"^{STEP_PREFIX}(\d{{6,}})$")
WEIGHTS, STATE, SIDECAR, TOKENIZER = "model.safetensors", "state.pt", "sidecar.json", "tokenizer.json"
SERVING_FILES = (WEIGHTS, SIDECAR, TOKENIZER)  # what a served or registered model needs (no optimizer state)
SHARDED = "sharded"  # FSDP runs: DCP's per-rank model + optimizer shards, what such a run resumes from
SCHEMA_VERSION = 1  # of the sidecar; bump when a field changes meaning


def git_commit() -> str | None:
    """The commit of the code that trained the model, with `-dirty` when the tree has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "tasks", "models"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # not a git checkout (e.g. an installed wheel): no commit to record
        return None
    return f"{commit}-dirty" if dirty else commit


def step_dirs(out: Path) -> list[Path]:
    """Complete checkpoint directories under `out`, oldest first."""
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / SIDECAR).exists()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(out: Path) -> Path | None:
    dirs = step_dirs(out)
    return dirs[-1] if dirs else None


def step_dir(out: Path, step: int) -> Path:
    """The checkpoint directory of `step` under a run's `out` (zero-padded, so names sort as steps)."""
    return out / f"{STEP_PREFIX}{step:06d}"


def staging_dir(out: Path, step: int) -> Path:
    """Where the checkpoint of `step` is assembled before its rename: one name every rank of a run agrees on."""
    return out / f"{STAGING_PREFIX}{step_dir(out, step).name}"


def clear_staging(out: Path) -> None:
    """Remove the half-written checkpoints a killed run left in `out` (call it on one rank, before any saves)."""
    for leftover in out.glob(f"{STAGING_PREFIX}{STEP_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def checkpoint_files(checkpoint_dir: Path) -> list[str]:
    """The checkpoint's files as `step_…/name`, relative to its run directory (what a stage manifest lists): the
    weights, state, sidecar and tokenizer, then any other file (a base tokenizer's spec); not the FSDP shards."""
    core = [name for name in (WEIGHTS, STATE, SIDECAR, TOKENIZER) if (checkpoint_dir / name).is_file()]
    extra = sorted(p.name for p in checkpoint_dir.iterdir() if p.is_file() and p.name not in core)
    return [f"{checkpoint_dir.name}/{name}" for name in core + extra]


def save_checkpoint(
    out: Path,
    step: int,
    model,
    state: dict[str, Any],
    sidecar: dict[str, Any],
    tokenizer_file: Path,
    keep_last: int = 2,
    model_state: dict | None = None,
    staged: Path | None = None,
) -> Path:
    """Write `step_dir(out, step)` atomically and delete all but the newest `keep_last` checkpoints.

    `model_state` overrides `model.state_dict()` (FSDP gathers a full state dict first); `state` must hold only
    tensors, numbers, strings and containers so `weights_only=True` can load it. `staged` is a `staging_dir` the
    ranks already wrote into (the FSDP shards); by default the directory is assembled from scratch.
    """
    import torch
    from safetensors.torch import save_file

    final = step_dir(out, step)
    tmp = staged or staging_dir(out, step)
    if staged is None:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    save_file(
        _untie(model.state_dict() if model_state is None else model_state, _tied_names(model)), str(tmp / WEIGHTS)
    )
    torch.save(state, tmp / STATE)
    copy_tokenizer(tokenizer_file, tmp)
    sidecar = {
        "schema_version": SCHEMA_VERSION,
        "step": step,
        "git_commit": git_commit(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **sidecar,
    }
    write_json_atomic(tmp / SIDECAR, sidecar)
    if final.exists():  # a re-save of the same step (e.g. the final step of a resumed run)
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in step_dirs(out)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old)
    return final


def copy_tokenizer(tokenizer_file: Path | str, dest: Path) -> None:
    """Copy `tokenizer.json` into `dest`, with the base model's tokenizer spec beside it when there is one."""
    from models.text.tokenizer import Tokenizer

    files = Tokenizer.files(tokenizer_file)
    shutil.copyfile(files[0], dest / TOKENIZER)
    for path in files[1:]:
        shutil.copyfile(path, dest / path.name)


def _tied_names(model) -> set[str]:
    """Names of parameters that are another parameter under a second name (tied lm_head.weight)."""
    seen: set[int] = set()
    tied = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
        seen.add(id(p))
    return tied


def _untie(state: dict, tied: set[str]) -> dict:
    """safetensors refuses shared storage: store each tied tensor once, under its first name (HF expects
    model.embed_tokens.weight with tie_word_embeddings), contiguous, on CPU. FSDP's gathered state dict has separate
    copies of tied tensors, hence the names from the model rather than storage pointers."""
    return {name: t.detach().cpu().contiguous() for name, t in state.items() if name not in tied}


def read_sidecar(checkpoint_dir: Path | str) -> dict[str, Any]:
    path = Path(checkpoint_dir) / SIDECAR
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {checkpoint_dir} is not a complete lmforge checkpoint")
    return json.loads(path.read_text())


def load_state(checkpoint_dir: Path | str) -> dict[str, Any]:
    import torch

    return torch.load(Path(checkpoint_dir) / STATE, map_location="cpu", weights_only=True)


def load_weights(model, checkpoint_dir: Path | str, device: str = "cpu") -> None:
    from safetensors.torch import load_file

    weights = load_file(str(Path(checkpoint_dir) / WEIGHTS), device=device)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # tied lm_head.weight is stored once under its embedding name; anything else missing is a real mismatch
    missing = [m for m in missing if not (m == "lm_head.weight" and getattr(model.config, "tie_embeddings", False))]
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint_dir}/{WEIGHTS} does not match the model: missing {missing}, unexpected {unexpected}"
        )


def load_model(checkpoint_dir: Path | str, device: str = "cpu"):
    """(model in eval mode on `device`, its Tokenizer, the sidecar dict) from a checkpoint directory."""
    from models.architectures.registry import ModelConfig, build_model
    from models.text.tokenizer import Tokenizer

    checkpoint_dir = Path(checkpoint_dir)
    sidecar = read_sidecar(checkpoint_dir)
    model = build_model(ModelConfig.model_validate(sidecar["model"]))
    load_weights(model, checkpoint_dir, device="cpu")
    tokenizer = Tokenizer.load(checkpoint_dir / TOKENIZER)
    expected = sidecar.get("tokenizer", {}).get("sha256")
    if expected and tokenizer.sha256 != expected:
        raise ValueError(f"{checkpoint_dir}/{TOKENIZER} does not match the sidecar's tokenizer sha256 {expected}")
    return model.to(device).eval(), tokenizer, sidecar
