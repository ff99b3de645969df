"""The model card: a markdown page describing one registered version, logged as an artifact and set as the version
description. It gathers what the pipeline recorded: data provenance (crawl sources and dates, stage manifest
hashes from the MLflow run), the tokenizer, the architecture, the training budget, evaluation results and the pins
they were scored under (eval file hashes, scorer and baseline versions), the gate decision, intended use,
limitations and known risks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.core.artifacts import CheckpointRef, EvalReport
from tasks.core.tracking import TrackingConfig, client
from tasks.evaluate.pins import read_pins

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
    from models.weights.checkpoint import SIDECAR

    path = ckpt.dir / ckpt.checkpoint / SIDECAR
    return json.loads(path.read_text()) if path.is_file() else {}


def pin_lines(report: EvalReport) -> list[str]:
    """What the evaluation was pinned to (`tasks.evaluate.pins`), from the eval report."""
    path = report.dir / "report.json"
    pins = read_pins(json.loads(path.read_text())) if path.is_file() else None
    return pins.markdown() if pins is not None else ["- not recorded (the report predates pinned evaluation)"]


def core_lines(report: EvalReport) -> list[str]:
    """CORE with what it averages over and which random baselines centered it (from report.json), if it was run."""
    path = report.dir / "report.json"
    core = json.loads(path.read_text()).get("core") if path.is_file() else None
    if not core:
        return []
    missing = f"; not in the bundle: {', '.join(core['missing'])}" if core["missing"] else ""
    return [f"- **CORE** `{core['metric']}` = {core['value']:.4f}: centered accuracy over {len(core['tasks'])} tasks, "
            f"DCLM {core['baseline']} random baselines, {core['max_per_task']} items per task (-1 = all){missing}", ""]
def contamination_lines(report: EvalReport) -> list[str]:
    """Per eval set: items checked, contaminated, and each metric on the clean subset beside the full score."""
    path = report.dir / "report.json"
    found = json.loads(path.read_text()).get("contamination") if path.is_file() else None
    if not found:
        return ["- not checked (evaluate.contamination off, or a report from before the check)"]
    data = found["training_data"]
    lines = [f"- {found['definition']}; {found['training_docs']:,} training documents scanned "
             f"({len(data['token_sets'])} token sets, {len(data['conversations'])} conversation files)"]
    if not found["complete"]:
        lines.append(f"- incomplete: not on disk to check: {'; '.join(data['unknown'])}")
    lines += ["", "| eval set | items | under 13 words | contaminated | metric | full | clean (items) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in sorted(found["sets"].items()):
        head = f"| {name} | {row['items']} | {row['short']} | {row['contaminated']} ({row['fraction']:.1%}) |"
        scores = sorted(row["scores"].items()) or [("", None)]
        for metric, score in scores:
            if score is None:
                lines.append(head + " | | |")
            else:
                lines.append(f"{head} {metric} | {score['full']:.4f} | {score['clean']:.4f} ({score['clean_items']}) |")
    return lines


def model_card(
    cfg: Any, tracking: TrackingConfig, run_id: str, ckpt: CheckpointRef, report: EvalReport, gate: dict[str, Any],
    version: str, summary: str = "",
) -> str:
    """Markdown card for version `version` of `cfg.model_name`; `summary` says what the version is when it is more
    than the checkpoint (a classifier over it)."""
    sidecar = read_sidecar(ckpt)
    arch = sidecar.get("model", {})
    tok = sidecar.get("tokenizer", {})
    lines = [
        f"# {cfg.model_name} v{version}",
        "",
        (f"**Gate:** {gate['decision']} → `{gate['alias']}`. {gate['reason']}. "
         f"{gate['metric']}: new {gate['new']}, champion {gate['champion']} (v{gate['champion_version']})."),
        "",
        *(["## Model", summary, ""] if summary else []),
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
        *core_lines(report),
        "| metric | value |",
        "| --- | --- |",
        *[f"| {key} | {value:.4f} |" for key, value in sorted(report.metrics.items())],
        "",
        "### Pinned evaluation",
        "Scores compare only under the same pins; the gate re-scores a champion evaluated under others.",
        *pin_lines(report),
        "## Contamination (eval items in the training data)",
        *contamination_lines(report),
        "",
        "## Intended use",
        cfg.intended_use,
        "",
        "## Limitations and known risks",
        *[f"- {risk}" for risk in RISKS],
    ]
    return "\n".join(lines) + "\n"
