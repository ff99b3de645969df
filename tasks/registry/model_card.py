"""The model card: a markdown page describing one registered version, logged as an artifact and set as the version
description. It gathers what the pipeline recorded: data provenance (crawl sources and dates, stage manifest
hashes from the MLflow run), the tokenizer, the architecture, the training budget, evaluation results, the gate
decision, intended use, limitations and known risks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.core.artifacts import CheckpointRef, EvalReport
from tasks.core.tracking import TrackingConfig, client

RISKS = [
    "Trained on a small crawl: it reproduces the style, errors and gaps of those pages and knows nothing else.",
    "Generates fluent but often false statements; never use its output as fact without checking.",
    "PII was scrubbed during curation, but scrubbing is imperfect; the model may echo personal data it saw.",
    "Toxicity and bias filtering was heuristic; outputs may be offensive or stereotyping. Not safety-tuned.",
    "English-centric: other languages were filtered out or are rare.",
]


def provenance(tracking: TrackingConfig, run_id: str) -> list[str]:
    """Lines on where the data came from: crawl settings, when each stage finished and its manifest hash."""
    run = client(tracking).get_run(run_id)
    lines = [f"- MLflow run `{run_id}` ({run.info.run_name or 'unnamed'})"]
    sources = ("crawl.seeds", "crawl.local_site", "crawl.warc_paths")
    crawl = {k: v for k, v in run.data.params.items() if k.startswith(sources)}
    lines += [f"- {key}: `{value[:200]}`" for key, value in sorted(crawl.items())]
    for key, sha in sorted(run.data.tags.items()):
        if not (key.startswith("lmforge.") and key.endswith(".manifest_sha256")):
            continue
        stage = key[len("lmforge.") : -len(".manifest_sha256")]
        manifest = Path(run.data.tags.get(f"lmforge.{stage}.path", "")) / "manifest.json"
        finished = json.loads(manifest.read_text()).get("finished_at", "?") if manifest.is_file() else "?"
        lines.append(f"- stage `{stage}`: manifest sha256 `{sha[:16]}`, finished {finished}")
    return lines


def read_sidecar(ckpt: CheckpointRef) -> dict[str, Any]:
    from models.checkpoint import SIDECAR

    path = ckpt.dir / ckpt.checkpoint / SIDECAR
    return json.loads(path.read_text()) if path.is_file() else {}


def model_card(
    cfg: Any, tracking: TrackingConfig, run_id: str, ckpt: CheckpointRef, report: EvalReport, gate: dict[str, Any],
    version: str,
) -> str:
    """Markdown card for version `version` of `cfg.model_name`."""
    sidecar = read_sidecar(ckpt)
    arch = sidecar.get("model", {})
    tok = sidecar.get("tokenizer", {})
    lines = [
        f"# {cfg.model_name} v{version}",
        "",
        (f"**Gate:** {gate['decision']} → `{gate['alias']}`. {gate['reason']}. "
         f"{gate['metric']}: new {gate['new']}, champion {gate['champion']} (v{gate['champion_version']})."),
        "",
        "## Data provenance",
        *provenance(tracking, run_id),
        f"- token data manifest sha256 (checkpoint sidecar): `{sidecar.get('data', {}).get('manifest_sha256', '?')}`",
        "",
        "## Tokenizer",
        f"- byte-level BPE, vocab {arch.get('vocab_size', '?')}, sha256 `{str(tok.get('sha256', '?'))[:16]}`",
        "",
        "## Architecture",
        f"- `{json.dumps(arch, sort_keys=True)}`",
        f"- {ckpt.n_params:,} parameters",
        "",
        "## Training budget",
        (f"- {ckpt.step} steps, {ckpt.tokens_seen:,} tokens, {ckpt.train_seconds:.0f} s, final train loss "
         f"{ckpt.final_train_loss:.4f}; git commit `{sidecar.get('git_commit')}`"),
        "",
        "## Evaluation",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {key} | {value:.4f} |" for key, value in sorted(report.metrics.items())],
        "",
        "## Intended use",
        cfg.intended_use,
        "",
        "## Limitations and known risks",
        *[f"- {risk}" for risk in RISKS],
    ]
    return "\n".join(lines) + "\n"
