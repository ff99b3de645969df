"""Run bookkeeping the pipeline flow wires between stages: the MLflow parent run, per-stage Prefect tables, and
the closing summary (the table `lmforge run` prints and the Prefect markdown artifact).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.core import progress, tracking
from tasks.core.artifacts import CheckpointRef, DocSet, EvalReport, ModelVersionRef, ShardSet, StageRef, TokenSet
from tasks.core.tracking import TrackingConfig


class PipelineSummary(BaseModel):
    """What a finished pipeline run reports: one (label, value) row per headline number, plus where to look."""

    rows: list[tuple[str, str]]
    mlflow_run_id: str
    model_uri: str
    tracking_uri: str
    answers: list[tuple[str, str]] = []  # (question, the registered model's answer), printed under the table

    def table(self) -> str:
        width = max(len(label) for label, _ in self.rows)
        lines = [f"{label:<{width}}  {value}" for label, value in self.rows]
        rule = "-" * max(len(line) for line in lines)
        chat = [f"\nQ: {q}\nA: {a}" for q, a in self.answers]
        return "\n".join([rule, *lines, rule, *chat])


def prefect_run_context() -> dict[str, str]:
    """The Prefect flow-run id and name when called inside a flow, for lineage tags; empty outside Prefect."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return {}
    return {"prefect.flow_run_id": str(context.flow_run.id), "prefect.flow_run_name": context.flow_run.name}


@task(name="open-tracking", retries=2, retry_delay_seconds=2)
def open_tracking(cfg: TrackingConfig, run_name: str, params: dict[str, Any]) -> str:
    return tracking.open_run(cfg, run_name, params, tags=prefect_run_context())


@task(name="close-tracking", retries=2, retry_delay_seconds=2)
def close_tracking(cfg: TrackingConfig, run_id: str, status: str) -> None:
    tracking.close_run(cfg, run_id, status)


@task(name="log-file", retries=2, retry_delay_seconds=2)
def log_file(cfg: TrackingConfig, run_id: str, path: str, artifact_path: str) -> None:
    """Attach one file of a stage's output (a model, a report) to the MLflow run."""
    tracking.client(cfg).log_artifact(run_id, path, artifact_path=artifact_path)


@contextmanager
def tracked_run(cfg: TrackingConfig, run_name: str, params: dict[str, Any]) -> Iterator[str]:
    """An MLflow run around a flow's stages: opened first, closed FINISHED, or FAILED when a stage raises."""
    run_id = open_tracking(cfg, run_name, params)
    try:
        yield run_id
    except BaseException:
        close_tracking(cfg, run_id, "FAILED")
        raise
    close_tracking(cfg, run_id, "FINISHED")


def stage_rows(stats: dict[str, Any]) -> list[dict[str, str]]:
    return [{"metric": key, "value": f"{value:g}"} for key, value in tracking.numeric_stats(stats).items()]


def stage_result(stage: str, ref: StageRef) -> str:
    """A finished stage in one line, for the console (tasks.core.progress)."""
    stats = ref.manifest().get("stats", {})
    if stage == "crawl":
        outcomes, timing = stats.get("outcomes", {}), stats.get("timing", {})
        return (f"{outcomes.get('fetched', 0)} pages fetched, {outcomes.get('not_modified', 0)} unchanged → "
                f"{stats.get('n_docs', 0)} documents ({timing.get('pages_per_s', 0)} pages/s)")
    if stage == "curate":
        return (f"{stats.get('docs_in', 0):,.0f} → {stats.get('docs_out', 0):,.0f} documents, "
                f"{stats.get('tokens_out', 0):,.0f} words kept")
    if isinstance(ref, DocSet) and ref.sources:  # the mix stage: what each source contributed
        return f"{ref.n_docs} documents: " + " + ".join(f"{s.documents} {s.name}" for s in ref.sources)
    if isinstance(ref, ShardSet):
        return f"{len(ref.files)} Parquet shards, {ref.n_docs} documents, {ref.n_bytes / 1e6:.1f} MB"
    if isinstance(ref, TokenSet):
        return f"{ref.n_train_tokens:,} train / {ref.n_val_tokens:,} val tokens, vocabulary {ref.vocab_size}"
    if isinstance(ref, CheckpointRef):
        return (f"{ref.step} steps, {ref.tokens_seen:,} tokens, train loss {ref.final_train_loss:.3f}, "
                f"val loss {stats.get('val_loss', float('nan')):.3f}, {stats.get('tokens_per_s', 0):,.0f} tok/s")
    if isinstance(ref, EvalReport):
        metrics, val = ref.metrics, stats.get("val", {})
        split = (f" over {val['docs']} val documents ({metrics.get('val_tokens', 0):,.0f} tokens"
                 f"{'' if val.get('complete', True) else ', capped by evaluate.max_val_tokens / max_doc_tokens'})"
                 if val else "")
        return (f"val loss {metrics.get('val_loss', float('nan')):.4f}, {metrics.get('val_bpb', float('nan')):.3f} "
                f"bits/byte{split}")
    return f"done: {ref.path}"


def checkpoint_source(checkpoint: CheckpointRef) -> dict[str, Any]:
    """Where an adapted model's base weights came from (the import stage's record in the sidecar)."""
    import json

    from models.weights.checkpoint import SIDECAR

    sidecar = checkpoint.dir / checkpoint.checkpoint / SIDECAR
    return json.loads(sidecar.read_text()).get("source", {}) if sidecar.is_file() else {}


def stage_time(manifest: dict[str, Any]) -> dict[str, Any]:
    """A finished stage's time for its console line, from its manifest: the seconds of its own work (not of the
    stages it waited for), when it finished (a stage reused from an earlier run is shown as such) and the name its
    code reported progress under (`progress.finish`)."""
    import calendar
    import time

    finished = manifest.get("finished_at")
    return {"seconds": manifest.get("seconds"), "reported_as": manifest.get("stage"),
            "finished_at": calendar.timegm(time.strptime(finished, "%Y-%m-%dT%H:%M:%SZ")) if finished else None}


def stage_figures(stage: str, ref: StageRef, dest: Path) -> list[Path]:
    """The pictures of a finished stage (tasks.core.figures): the training curve, the curation funnel."""
    from tasks.core import figures

    stats = ref.manifest().get("stats", {})
    if isinstance(ref, CheckpointRef) and (ref.dir / "log.jsonl").exists() and ref.step:
        return [figures.training_curve(ref.dir / "log.jsonl", ref.tokens_seen / ref.step, dest / "training_curve.png")]
    if stage == "curate" and stats.get("steps"):
        return [figures.data_funnel(stats, dest / "data_funnel.png")]
    return []


@task(name="track-stage", retries=2, retry_delay_seconds=2)
def track_stage(cfg: TrackingConfig, run_id: str, stage: str, ref: StageRef) -> None:
    """Log a finished stage to MLflow (its pictures under `figures/`), show its statistics as a Prefect table
    artifact, and end its console line with a one-line result."""
    import tempfile

    from prefect.artifacts import create_table_artifact

    tracking.log_stage(cfg, run_id, stage, ref)
    with tempfile.TemporaryDirectory(prefix="lmforge-figures-") as tmp:
        for png in stage_figures(stage, ref, Path(tmp)):
            tracking.client(cfg).log_artifact(run_id, str(png), artifact_path="figures")
    manifest = ref.manifest()
    progress.finish(stage, stage_result(stage, ref), **stage_time(manifest))
    rows = stage_rows(manifest.get("stats", {}))
    if rows:
        create_table_artifact(
            key=f"stage-{stage}", table=rows, description=f"{stage}: statistics of {ref.path} ({manifest.get('seconds')} s)"
        )


def stage_done(stage: str, ref: StageRef, label: str) -> None:
    """End `stage`'s console line with its result, tagged `label` (a flow that runs a stage once per recipe or arm,
    logging to MLflow itself); a stage read from the cache gets its line too."""
    progress.update(stage, note=label)  # a fresh line when this stage's last one has already finished
    progress.finish(stage, f"[{label}] {stage_result(stage, ref)}", **stage_time(ref.manifest()))


# Where the MLflow UI of a local store is served: `lmforge up` starts it on this address by default.
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"
FIGURES = {"training_curve.png": "Training curve", "data_funnel.png": "Data funnel"}


def mlflow_ui(tracking_uri: str) -> str:
    return tracking_uri.rstrip("/") if tracking_uri.startswith("http") else LOCAL_MLFLOW_UI


def mlflow_run_link(tracking_uri: str, run_id: str, experiment_id: str) -> str:
    # MLflow 3's UI opens in its GenAI view unless the link asks for the model-training one.
    link = f"{mlflow_ui(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    if tracking_uri.startswith("http"):
        return link
    return f"[run {run_id}]({link}) in {tracking_uri} (served by `lmforge up`)"


def figure_links(tracking_uri: str, run_id: str, logged: list[str]) -> list[str]:
    """Markdown images of the run's figures, served by the MLflow server's artifact endpoint."""
    return [f"![{FIGURES[name]}]({mlflow_ui(tracking_uri)}/get-artifact?path=figures/{name}&run_uuid={run_id})"
            for name in FIGURES if f"figures/{name}" in logged]


@task(name="summarize")
def summarize(
    cfg: TrackingConfig,
    run_id: str,
    docs: DocSet,
    curated: DocSet,
    shards: ShardSet,
    tokens: TokenSet,
    checkpoint: CheckpointRef,
    report: EvalReport,
    version: ModelVersionRef,
    base: EvalReport | None = None,
    sft: CheckpointRef | None = None,
) -> PipelineSummary:
    """The run's headline numbers; with `base` (the imported model's evaluation) the before/after scores too.
    `checkpoint` is the train stage's; `sft`, when the flow fine-tuned it, the chat SFT's (the model evaluated)."""
    from prefect.artifacts import create_markdown_artifact

    outcomes = docs.manifest().get("stats", {}).get("outcomes", {})
    rows = [
        ("pages crawled (fetched / unchanged)", f"{outcomes.get('fetched', 0)} / {outcomes.get('not_modified', 0)}"),
        ("documents extracted", str(docs.n_docs)),
        ("documents after curation", str(curated.n_docs)),
        ("Parquet shards (docs, MB)", f"{len(shards.files)} ({shards.n_docs}, {shards.n_bytes / 1e6:.2f})"),
        ("tokens train / val", f"{tokens.n_train_tokens:,} / {tokens.n_val_tokens:,}"),
        ("vocab size", str(tokens.vocab_size)),
        ("parameters", f"{checkpoint.n_params:,}"),
        ("train steps / time", f"{checkpoint.step} / {checkpoint.train_seconds:.0f} s"),
        *([("SFT steps / time", f"{sft.step} / {sft.train_seconds:.0f} s")] if sft is not None else []),
        ("val loss", f"{report.metrics.get('val_loss', float('nan')):.4f}"),
        ("val bits per byte", f"{report.metrics.get('val_bpb', float('nan')):.4f}"),
    ]
    if base is not None:  # adapted from an imported model: what adapting it changed
        source = checkpoint_source(checkpoint)
        rows.insert(6, ("base model", f"{source.get('id', '?').rsplit('/', 1)[-1]} ({source.get('license', '?')})"))
        rows += [(f"{name} base → adapted", f"{base.metrics[name]:.4f} → {report.metrics[name]:.4f}")
                 for name in sorted(report.metrics) if name in base.metrics and name.endswith("_bpb")]
    rows.append(("MLflow model", f"{version.model_uri} (@{version.alias})"))
    summary = PipelineSummary(rows=rows, mlflow_run_id=run_id, model_uri=version.model_uri, tracking_uri=cfg.uri())
    mlflow_client = tracking.client(cfg)
    experiment = mlflow_client.get_run(run_id).info.experiment_id
    logged = [item.path for item in mlflow_client.list_artifacts(run_id, "figures")]
    samples = "\n".join(f"- `{sample[:200]!r}`" for sample in report.samples[:3])
    create_markdown_artifact(
        key="pipeline-summary",
        markdown="\n".join(
            ["# lmforge pipeline run", "", "| | |", "|---|---|"]
            + [f"| {label} | {value} |" for label, value in rows]
            + ["", f"MLflow: {mlflow_run_link(cfg.uri(), run_id, experiment)}", ""]
            + figure_links(cfg.uri(), run_id, logged)
            + ["", "Samples:", samples]
        ),
        description="Headline numbers of this pipeline run",
    )
    progress.finish("register", f"{version.model_uri} (@{version.alias})")
    return summary
