"""Evaluate stage: held-out loss, perplexity and bits per byte, downstream benchmarks, sample generations.

Bits per byte is what makes models with different tokenizers comparable: `bpb = total nats / (ln 2 · bytes)`,
where the nats are summed over every text token of the evaluated documents (document-separator `<|bos|>` targets
are not text, so they are not scored) and the bytes are the UTF-8 bytes of those documents. The held-out split
comes from the tokenize stage's val shards; users can name more text/JSONL/Parquet files (`text_files`). The
stage writes `report.json` (metrics, samples and an `eval_sets` fingerprint per metric group, which the promotion
gate uses to compare models only on the same data) and `report.md`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks import downstream, safety
from tasks.artifacts import CheckpointRef, EvalReport, TokenSet, finish_stage, load_done, reset_dir, stage_dir

VAL_DOCS = "val_docs.jsonl"
DEFAULT_PROMPTS = [
    "The Python standard library",
    "Debian is a free operating system",
    "To install a package, run",
    "def fibonacci(n):",
]


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str = Field(default="auto", description="torch device; auto = cuda when available, else cpu.")
    batch_size: int = Field(default=8, ge=1, description="Rows per forward pass.")
    seq_len: int | None = Field(default=None, description="Context per row; None = the model's context length.")
    max_val_tokens: int | None = Field(
        default=200_000, description="Score whole val documents until this many tokens (None = the whole split)."
    )
    text_files: list[str] = Field(
        default_factory=list, description="Extra .txt/.md (one doc), .jsonl ('text') or .parquet ('text') files."
    )
    hellaswag_file: str | None = Field(default=None, description="HellaSwag 6-line text file (.bz2 ok).")
    arc_file: str | None = Field(default=None, description="ARC JSONL file (AI2 format).")
    lambada_file: str | None = Field(default=None, description="LAMBADA JSONL file ({'text': ...}).")
    max_downstream_examples: int | None = Field(default=500, description="Items per benchmark (None = all).")
    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PROMPTS), description="Sample prompts.")
    max_new_tokens: int = Field(default=48, ge=1, description="Tokens generated per sample prompt.")
    temperature: float = Field(default=0.8, ge=0.0, description="Sampling temperature for the samples.")
    top_k: int | None = Field(default=50, description="Top-k sampling for the samples.")
    seed: int = Field(default=1337, description="Seed for sample generation, so samples are reproducible.")
    crows_pairs_file: str | None = Field(default=None, description="CrowS-Pairs CSV for the bias probe (tasks.safety).")
    safety_prompts: list[str] = Field(
        default_factory=list,
        description="Prompts whose completions are checked for bad words and PII; [] = off, "
        "tasks.safety.SAFETY_PROMPTS is the fixed set.",
    )
    safety_samples: int = Field(default=2, ge=1, description="Completions sampled per safety prompt.")
    safety_max_new_tokens: int = Field(default=32, ge=1, description="Tokens per safety completion.")
    canaries: list[str] = Field(
        default_factory=list, description="Strings planted in the training data; the probe tries to extract them."
    )


def resolve_device(device: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def context_length(model: Any) -> int:
    config = getattr(model, "config", None)
    for name in ("seq_len", "block_size", "sequence_len", "n_ctx"):
        if config is not None and getattr(config, name, None):
            return int(getattr(config, name))
    raise ValueError("cannot tell the model's context length; set evaluate.seq_len")


def score_stream(model: Any, stream: np.ndarray, skip_id: int, seq_len: int, batch_size: int, device: str) -> tuple[float, int]:
    """(total nats, tokens scored) of next-token prediction over `stream`, skipping targets equal to `skip_id`.

    Windows of `seq_len` targets overlap by one token, so every token after the first is scored exactly once.
    """
    import torch

    starts = list(range(0, max(1, len(stream) - 1), seq_len))
    total, count = 0.0, 0
    for b in range(0, len(starts), batch_size):
        rows = [np.asarray(stream[s : s + seq_len + 1], dtype=np.int64) for s in starts[b : b + batch_size]]
        width = max(len(r) for r in rows) - 1
        x = torch.zeros((len(rows), width), dtype=torch.long)
        y = torch.full((len(rows), width), -1, dtype=torch.long)  # -1 marks padding
        for i, row in enumerate(rows):
            x[i, : len(row) - 1] = torch.from_numpy(row[:-1])
            y[i, : len(row) - 1] = torch.from_numpy(row[1:])
        with torch.no_grad():
            logits, _ = model(x.to(device))  # (B, T, V)
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        keep = (y >= 0) & (y != skip_id)
        picked = logprobs.gather(-1, y.clamp(min=0)[..., None]).squeeze(-1)  # (B, T)
        total += float(-(picked[keep]).double().sum())
        count += int(keep.sum())
    return total, count


def nll_metrics(nats: float, tokens: int, n_bytes: int, prefix: str) -> dict[str, float]:
    loss = nats / max(1, tokens)
    return {
        f"{prefix}_loss": loss,
        f"{prefix}_ppl": math.exp(min(loss, 50.0)),
        f"{prefix}_bpb": nats / (math.log(2) * max(1, n_bytes)),
        f"{prefix}_tokens": float(tokens),
        f"{prefix}_bytes": float(n_bytes),
    }


def split_docs(tokens: np.ndarray, bos_id: int) -> list[np.ndarray]:
    """Documents of a token shard, each starting with its `<|bos|>`."""
    starts = np.flatnonzero(np.asarray(tokens) == bos_id).tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    return [np.asarray(tokens[a:b]) for a, b in zip(starts, starts[1:] + [len(tokens)])]


def heldout_metrics(model: Any, tokenizer: Any, tokens: TokenSet, cfg: EvalConfig, seq_len: int, device: str):
    """val_* metrics over the val shards (whole documents up to `max_val_tokens`), and the set's fingerprint."""
    from tasks.data import read_bin

    docs: list[np.ndarray] = []
    n_total = n_kept = 0
    for name in tokens.val_files:
        for doc in split_docs(read_bin(tokens.dir / name), tokenizer.bos_id):
            n_total += len(doc)
            if cfg.max_val_tokens is None or n_kept + len(doc) <= cfg.max_val_tokens or not docs:
                docs.append(doc)
                n_kept += len(doc)
    if not docs:
        raise ValueError(f"no val tokens in {tokens.dir} ({tokens.val_files}); the tokenize stage made no val split")
    digest = hashlib.sha256()
    texts = [tokenizer.decode([int(t) for t in doc if t != tokenizer.bos_id]) for doc in docs]
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    decoded_bytes = sum(len(text.encode("utf-8")) for text in texts)
    complete = n_kept == n_total
    # The tokenize stage's byte count is the definition when every val document is scored; a capped run divides by
    # the bytes of the documents it scored.
    n_bytes = tokens.val_bytes if complete and tokens.val_bytes else decoded_bytes
    nats, count = score_stream(model, np.concatenate(docs), tokenizer.bos_id, seq_len, cfg.batch_size, device)
    stats = {"docs": len(docs), "tokens_available": n_total, "decoded_bytes": decoded_bytes, "complete": complete}
    return nll_metrics(nats, count, n_bytes, "val"), digest.hexdigest()[:16], stats, texts


def read_text_docs(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"evaluate.text_files: {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise ValueError(f"{path}: Parquet file needs a 'text' column, has {table.column_names}")
        return [t for t in table.column("text").to_pylist() if t]
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [path.read_text(encoding="utf-8")]


def text_file_metrics(model: Any, tokenizer: Any, path: Path, seq_len: int, cfg: EvalConfig, device: str,
                      prefix: str | None = None, n_bytes: int | None = None):
    docs = read_text_docs(path)
    stream = np.array([i for doc in docs for i in [tokenizer.bos_id, *tokenizer.encode(doc)]], dtype=np.int64)
    nats, count = score_stream(model, stream, tokenizer.bos_id, seq_len, cfg.batch_size, device)
    n_bytes = n_bytes or sum(len(doc.encode("utf-8")) for doc in docs)
    return nll_metrics(nats, count, n_bytes, prefix or f"text/{path.stem}"), hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def sample_generations(model: Any, tokenizer: Any, cfg: EvalConfig, device: str) -> list[str]:
    import torch

    torch.manual_seed(cfg.seed)
    samples = []
    for prompt in cfg.prompts:
        idx = torch.tensor([[tokenizer.bos_id, *tokenizer.encode(prompt)]], dtype=torch.long, device=device)
        out = model.generate(idx, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, eos_id=tokenizer.eos_id)
        samples.append(prompt + tokenizer.decode(out[0, idx.shape[1] :].tolist(), skip_special_tokens=True))
    return samples


def evaluate_model(model: Any, tokenizer: Any, cfg: EvalConfig, tokens: TokenSet | None, device: str = "cpu") -> dict[str, Any]:
    """Every configured evaluation of a loaded model: {"metrics", "eval_sets", "samples", "stats"}."""
    seq_len = cfg.seq_len or context_length(model)
    metrics: dict[str, float] = {}
    eval_sets: dict[str, str] = {}
    stats: dict[str, Any] = {}
    t0 = time.time()
    if tokens is not None:
        val, eval_sets["val"], stats["val"], val_texts = heldout_metrics(model, tokenizer, tokens, cfg, seq_len, device)
        metrics.update(val)
    for name in cfg.text_files:
        found, eval_sets[f"text/{Path(name).stem}"] = text_file_metrics(model, tokenizer, Path(name), seq_len, cfg, device)
        metrics.update(found)
    stats["heldout_seconds"] = time.time() - t0
    limit = cfg.max_downstream_examples
    benchmarks = [
        ("hellaswag", cfg.hellaswag_file, downstream.load_hellaswag, downstream.score_multiple_choice),
        ("arc", cfg.arc_file, downstream.load_arc, downstream.score_multiple_choice),
        ("lambada", cfg.lambada_file, downstream.load_lambada, downstream.score_lambada),
    ]
    for name, path, load, score in benchmarks:
        if path:
            t0 = time.time()
            found = score(model, tokenizer, load(path, limit), seq_len, device, cfg.batch_size)
            metrics.update({f"{name}_{key}": value for key, value in found.items()})
            eval_sets[name] = downstream.file_fingerprint(path, limit)
            stats[f"{name}_seconds"] = time.time() - t0
    t0 = time.time()
    found, sets, safety_details = safety.run_probes(model, tokenizer, cfg, seq_len, device)
    metrics.update(found)
    eval_sets.update(sets)
    stats["safety_seconds"] = time.time() - t0
    t0 = time.time()
    samples = sample_generations(model, tokenizer, cfg, device) if cfg.prompts else []
    stats["samples_seconds"] = time.time() - t0
    result = {"metrics": metrics, "eval_sets": eval_sets, "samples": samples, "stats": stats, "safety": safety_details}
    return result | ({"val_texts": val_texts} if tokens is not None else {})


def report_markdown(result: dict[str, Any], ckpt: CheckpointRef) -> str:
    lines = [f"# Evaluation of checkpoint step {ckpt.step} ({ckpt.n_params:,} parameters)", "", "| metric | value |",
             "| --- | --- |"]
    lines += [f"| {key} | {value:.4f} |" for key, value in sorted(result["metrics"].items())]
    lines += ["", "## Samples", ""] + [f"- `{sample!r}`" for sample in result["samples"]]
    return "\n".join(lines) + "\n"


def run_evaluate(cfg: EvalConfig, ckpt: CheckpointRef, tokens: TokenSet, out: Path) -> EvalReport:
    from tasks.checkpoint import load_model

    t0 = time.time()
    if any(out.iterdir()):  # leftovers of a killed run: evaluation is cheap to redo
        reset_dir(out)
    device = resolve_device(cfg.device)
    model, tokenizer, _ = load_model(ckpt.dir / ckpt.checkpoint, device=device)
    model.eval()
    result = evaluate_model(model, tokenizer, cfg, tokens, device)
    result["checkpoint"] = {"path": str(ckpt.dir / ckpt.checkpoint), "step": ckpt.step, "manifest": ckpt.manifest_sha256}
    result["tokenizer_sha256"] = tokenizer.sha256
    # the scored val documents as text: the eval set itself, so a model with another tokenizer can be scored on it
    with open(out / VAL_DOCS, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": text}) + "\n" for text in result.pop("val_texts"))
    (out / "report.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    (out / "report.md").write_text(report_markdown(result, ckpt))
    ref = EvalReport(path=str(out), metrics=result["metrics"], samples=result["samples"])
    stats = {**result["stats"], **{k: v for k, v in result["metrics"].items() if "/" not in k}}
    return finish_stage(out, ref, config=cfg, stats=stats, files=["report.json", "report.md", VAL_DOCS], started=t0)


def rescore(checkpoint_dir: Path, report: EvalReport, device: str = "cpu") -> tuple[dict[str, float], dict[str, str]]:
    """Metrics and eval-set fingerprints of another checkpoint on exactly the eval sets of `report`.

    The promotion gate uses it when the champion was scored on other data. The val set is re-read as text
    (`val_docs.jsonl`), so a champion with a different tokenizer is scored fairly: bits per byte over the same bytes.
    """
    from tasks.checkpoint import load_model

    saved = json.loads((report.dir / "report.json").read_text())
    cfg = EvalConfig.model_validate({**report.manifest()["config"], "prompts": []})
    model, tokenizer, _ = load_model(checkpoint_dir, device=device)
    result = evaluate_model(model, tokenizer, cfg, None, device)
    metrics, eval_sets = result["metrics"], result["eval_sets"]
    if (report.dir / VAL_DOCS).is_file() and "val" in saved.get("eval_sets", {}):
        found, _ = text_file_metrics(model, tokenizer, report.dir / VAL_DOCS, cfg.seq_len or context_length(model), cfg,
                                     device, prefix="val", n_bytes=int(report.metrics.get("val_bytes", 0)) or None)
        metrics.update(found)
        eval_sets["val"] = saved["eval_sets"]["val"]
    return metrics, eval_sets


@task(name="evaluate", retries=1)
def evaluate(cfg: EvalConfig, ckpt: CheckpointRef, tokens: TokenSet) -> EvalReport:
    out = stage_dir("evaluate", cfg, ckpt, tokens)
    return load_done(out, EvalReport) or run_evaluate(cfg, ckpt, tokens, out)
