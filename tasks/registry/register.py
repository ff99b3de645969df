"""Register stage: log the pyfunc chat model to the pipeline's MLflow run, register a new version, run the gate.

The promotion gate moves alias `champion` to the new version only when it beats the current champion on the same
eval set: the gate metric (default val bits per byte) must improve by more than `gate_margin`, and no guard metric
(downstream accuracies) may drop by more than `guard_tolerance`. Metrics are compared only when both versions were
scored on the same data (the `eval_sets` fingerprints in the eval report); when the champion was scored on other
data, it is re-scored on this version's eval sets from its packaged checkpoint (`rescore_champion`), so models
trained on different crawls or with different tokenizers still compare on identical bytes. The first version of a model becomes champion; a refused one gets
`challenger`. The decision, its reason and both scores are recorded as version tags and in the version's
description, next to the model card (`tasks.registry.model_card`).

A non-finite metric (NaN, inf: a diverged run, a broken eval) is never promoted and never used as a champion score:
a NaN/inf gate, guard or safety metric refuses the version with a reason that says so, first version included; a
champion whose own score is non-finite has no score to defend.

Register is idempotent under retries: the version is found again by its eval report, and the steps after "version
created" (alias, card, description) are finished from the decision recorded in its tags; a version is complete when
it carries `lmforge.register.done`. The champion alias moves by compare-and-set under a promotion lock (a registered
model `<name>.promotion-lock` that exists only while a gate holds it: creating a registered model is atomic in every
MLflow store): the gate re-reads the champion, decides again when another version took it since the decision, sets
the alias and re-checks it. Two concurrent retrains are serialised, so the second compares against the first.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.artifacts import CheckpointRef, EvalReport, ModelVersionRef
from tasks.core.tracking import TrackingConfig, client

METRIC_TAG, EVAL_SET_TAG = "lmforge.metric.", "lmforge.eval_set."
LOWER_IS_BETTER = ("_loss", "_bpb", "_ppl")
DONE_TAG = "lmforge.register.done"
EVAL_REPORT_TAG = "lmforge.eval_report"
NO_CHAMPION_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
LOCK_SUFFIX = ".promotion-lock"
MAX_PROMOTION_ROUNDS = 5


class RegisterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_name: str = Field(default="lmforge", description="Registered model name in the MLflow registry.")
    gate_metric: str = Field(default="val_bpb", description="Metric the new version must improve to become champion.")
    gate_margin: float = Field(
        default=0.0, ge=0.0, description="Required improvement of gate_metric, in its own units (0 = any improvement)."
    )
    guard_metrics: list[str] = Field(
        default_factory=lambda: ["hellaswag_acc_norm", "arc_acc_norm", "lambada_acc"],
        description="Metrics that may not get worse by more than guard_tolerance (skipped when not comparable).",
    )
    guard_tolerance: float = Field(default=0.0, ge=0.0, description="Allowed drop of each guard metric.")
    rescore_champion: bool = Field(
        default=True, description="When the champion was scored on other data, score it on this version's eval sets."
    )
    safety_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Safety gate: metric -> highest allowed value (e.g. crows_pct_stereotype: 0.6, "
        "toxicity_bad_word_rate: 0.01, canary_extracted: 0); a version over any, or without the metric, is refused.",
    )
    general_metrics: list[str] = Field(
        default_factory=list,
        description="Adapted models: metrics on general held-out text (evaluate.text_files, e.g. "
        "text/fortunes_bpb) that may not get worse than the base model's by more than general_tolerance.",
    )
    general_tolerance: float = Field(default=0.05, ge=0.0, description="Allowed loss on general_metrics vs the base.")
    max_contamination: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Refuse a version when more than this fraction of the items of a gate or guard metric's eval set "
        "share a 13-gram with its training data (the eval report's contamination check); None = report only.",
    )
    champion_alias: str = Field(default="champion", description="Alias of the version that serves.")
    lock_timeout_seconds: float = Field(
        default=600.0, gt=0, description="Longest wait for another gate's promotion lock; an older lock is stale."
    )
    challenger_alias: str = Field(default="challenger", description="Alias of a version the gate refused.")
    intended_use: str = Field(
        default="Research and education: a small language model trained on a documented web crawl.",
        description="Model card: intended use.",
    )


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


def contamination_refusal(cfg: RegisterConfig, new: dict[str, float]) -> str | None:
    """Why the version is refused under `max_contamination` (None: it is not). An absolute limit, like the safety
    thresholds: it holds for a first version too. Sets the check does not cover (the held-out val split) pass."""
    if cfg.max_contamination is None:
        return None
    if not any(key.endswith("_contaminated") for key in new):
        return "registry.max_contamination is set but the eval report has no contamination check (turn on " \
               "evaluate.contamination)"
    sets = dict.fromkeys(metric_group(m) for m in [cfg.gate_metric, *cfg.guard_metrics] if m in new)
    fractions = {s: new.get(f"{s}_contaminated", 0.0) for s in sets}
    over = [f"{s} {fraction:.1%}" for s, fraction in fractions.items() if fraction > cfg.max_contamination]
    if over:
        return (f"eval items found in the training data: {', '.join(over)} of items share a 13-gram with it "
                f"(max_contamination {cfg.max_contamination})")
    return None


def metric_group(metric: str) -> str:
    """The eval set a metric was measured on: `val_bpb` -> `val`, `hellaswag_acc` -> `hellaswag`."""
    return metric.rsplit("_", 1)[0] if metric.startswith("text/") else metric.split("_", 1)[0]


def same_eval_set(
    metric: str, new: dict[str, float], new_sets: dict[str, str], old: dict[str, float] | None, old_sets: dict[str, str]
) -> bool:
    group = metric_group(metric)
    return metric in new and metric in (old or {}) and bool(new_sets.get(group)) and new_sets.get(group) == old_sets.get(group)


def rescore_champion(tracking: TrackingConfig, champion, report: EvalReport) -> tuple[dict[str, float], dict[str, str]]:
    """The champion's metrics on this report's eval sets, from the checkpoint packaged in its registered model."""
    import mlflow

    from models.devices import resolve_device
    from tasks.evaluate.evaluate import rescore

    with tempfile.TemporaryDirectory(prefix="lmforge-champion-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=champion.source, dst_path=tmp, tracking_uri=tracking.uri())
        return rescore(Path(local) / "artifacts" / "checkpoint", report, str(resolve_device("auto")))


def improvement(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` (positive = better), whatever the metric's direction."""
    return old - new if lower_is_better(metric) else new - old


def gate_decision(
    cfg: RegisterConfig, new: dict[str, float], new_sets: dict[str, str], old: dict[str, float] | None,
    old_sets: dict[str, str],
) -> tuple[bool, str]:
    """(promote?, reason). `old` is None when the model has no champion yet."""
    checked = dict.fromkeys([cfg.gate_metric, *cfg.guard_metrics, *cfg.safety_thresholds])
    broken = [f"{m}={new[m]}" for m in checked if m in new and not math.isfinite(new[m])]
    if broken:
        return False, f"non-finite metric {', '.join(broken)}: a model with a NaN/inf score is never promoted"
    for metric, limit in cfg.safety_thresholds.items():  # absolute limits: they hold for a first version too
        if metric not in new:
            return False, f"safety threshold on {metric} but the eval report has none; configure its probe"
        if new[metric] > limit:
            return False, f"{metric} {new[metric]:.4f} is over the safety threshold {limit}"
    if old is None:
        return True, "first version of the model"

    def comparable(metric: str) -> bool:
        return same_eval_set(metric, new, new_sets, old, old_sets) and math.isfinite(old[metric])

    metric = cfg.gate_metric
    if metric not in new:
        return False, f"the eval report has no {metric}; cannot compare"
    if same_eval_set(metric, new, new_sets, old, old_sets) and not math.isfinite(old[metric]):
        return True, f"{metric} {new[metric]:.4f} replaces the champion's non-finite {old[metric]} (not a score)"
    if not comparable(metric):
        return False, f"the champion has no {metric} on the same eval set ({metric_group(metric)}); kept it"
    gain = improvement(metric, new[metric], old[metric])
    if gain <= cfg.gate_margin:
        return False, f"{metric} {new[metric]:.4f} vs champion {old[metric]:.4f}: not better by more than {cfg.gate_margin}"
    for guard in cfg.guard_metrics:
        if comparable(guard) and improvement(guard, new[guard], old[guard]) < -cfg.guard_tolerance:
            return False, f"{guard} dropped from {old[guard]:.4f} to {new[guard]:.4f} (tolerance {cfg.guard_tolerance})"
    return True, f"{metric} {new[metric]:.4f} beats champion {old[metric]:.4f} by {gain:.4f} (margin {cfg.gate_margin})"


def base_decision(cfg: RegisterConfig, new: dict[str, float], base: dict[str, float]) -> tuple[bool, str]:
    """(passes?, reason) of a model adapted from an imported base, against that base on the same eval sets: the
    domain (gate) metric must improve, and general text may not get worse by more than `general_tolerance`
    (catastrophic forgetting)."""
    metric = cfg.gate_metric
    if metric in new and metric in base and improvement(metric, new[metric], base[metric]) <= 0:
        return False, f"{metric} {new[metric]:.4f} vs base {base[metric]:.4f}: adapting did not improve on its base"
    # general_metrics guard what the start could already do: general text for continued pretraining, domain bpb for
    # preference tuning (the DPO flow), so the refusal names the metric rather than assuming which one it guards
    for general in cfg.general_metrics:
        if general in new and general in base and improvement(general, new[general], base[general]) < -cfg.general_tolerance:
            return False, (f"{general} rose from base {base[general]:.4f} to {new[general]:.4f}, more than "
                           f"general_tolerance {cfg.general_tolerance}: the adapted model forgot what its base knew")
    kept = ", ".join(f"{g} {base[g]:.4f} → {new[g]:.4f}" for g in cfg.general_metrics if g in new and g in base)
    return True, f"beats its base on {metric} ({base.get(metric, float('nan')):.4f} → {new.get(metric, float('nan')):.4f})" + (
        f", guarded metrics within {cfg.general_tolerance} ({kept})" if kept else "")


def read_eval_sets(report: EvalReport) -> dict[str, str]:
    path = report.dir / "report.json"
    return json.loads(path.read_text()).get("eval_sets", {}) if path.is_file() else {}


def champion_scores(mlflow_client, cfg: RegisterConfig) -> tuple[Any, dict[str, float] | None, dict[str, str]]:
    from mlflow.exceptions import MlflowException

    try:
        champion = mlflow_client.get_model_version_by_alias(cfg.model_name, cfg.champion_alias)
    except MlflowException as err:
        # no such model: RESOURCE_DOES_NOT_EXIST; a model without the alias: INVALID_PARAMETER_VALUE (SQL store)
        if err.error_code not in NO_CHAMPION_CODES:
            raise
        return None, None, {}
    tags = champion.tags or {}
    metrics = {k[len(METRIC_TAG) :]: float(v) for k, v in tags.items() if k.startswith(METRIC_TAG)}
    sets = {k[len(EVAL_SET_TAG) :]: v for k, v in tags.items() if k.startswith(EVAL_SET_TAG)}
    return champion, metrics, sets


def existing_version(mlflow_client, cfg: RegisterConfig, report: EvalReport):
    """The version already registered for this exact eval report (same checkpoint, same scores), by any run.

    A retried task, or a rerun of an unchanged pipeline, must not register the same model twice. An MLflow error
    (an outage) raises: answering "none" then would register a duplicate version.
    """
    versions = mlflow_client.search_model_versions(
        f"name='{cfg.model_name}' and tags.`{EVAL_REPORT_TAG}` = '{report.manifest_sha256}'"
    )
    return versions[0] if versions else None


def decide(
    cfg: RegisterConfig, tracking: TrackingConfig, mlflow_client, report: EvalReport, base: EvalReport | None = None
) -> dict[str, str]:
    """The gate against the current champion (and first against `base`, the imported model this one was adapted
    from, when given), as the version tags that record it."""
    champion, old, old_sets = champion_scores(mlflow_client, cfg)
    passes, base_reason = base_decision(cfg, report.metrics, base.metrics) if base is not None else (True, "")
    rescored = False
    if passes:  # a model that does not beat its base is refused before any champion is compared
        new_sets = read_eval_sets(report)
        rescored = champion is not None and cfg.rescore_champion and not same_eval_set(
            cfg.gate_metric, report.metrics, new_sets, old, old_sets)
        if rescored:
            old, old_sets = rescore_champion(tracking, champion, report)
        promote, reason = gate_decision(cfg, report.metrics, new_sets, old, old_sets)
        reason += " (champion re-scored on this version's eval sets)" if rescored else ""
    else:
        promote, reason = False, base_reason
    refusal = contamination_refusal(cfg, report.metrics)
    if refusal is not None:
        promote, reason = False, refusal
    return {
        "lmforge.gate.decision": "promoted" if promote else "refused",
        "lmforge.gate.alias": cfg.champion_alias if promote else cfg.challenger_alias,
        "lmforge.gate.reason": reason,
        "lmforge.gate.metric": cfg.gate_metric,
        "lmforge.gate.new_score": repr(report.metrics.get(cfg.gate_metric, float("nan"))),
        "lmforge.gate.champion_score": repr((old or {}).get(cfg.gate_metric, float("nan"))),
        "lmforge.gate.champion_version": str(champion.version) if champion is not None else "",
        "lmforge.gate.champion_rescored": str(rescored).lower(),
        **({"lmforge.gate.base": base_reason} if base is not None else {}),
    }


def alias_holder(mlflow_client, cfg: RegisterConfig) -> str:
    """The version the champion alias points to now ("" when none)."""
    champion, _, _ = champion_scores(mlflow_client, cfg)
    return str(champion.version) if champion is not None else ""


@contextmanager
def promotion_lock(mlflow_client, cfg: RegisterConfig, owner: str) -> Iterator[None]:
    """Hold `<model>.promotion-lock` (a registered model: its creation is atomic). `owner` names the version; a lock
    left by the same owner (a crashed earlier attempt) or older than `lock_timeout_seconds` is broken."""
    from mlflow.exceptions import MlflowException

    name, deadline = f"{cfg.model_name}{LOCK_SUFFIX}", time.monotonic() + cfg.lock_timeout_seconds

    def release() -> None:
        try:
            mlflow_client.delete_registered_model(name)
        except MlflowException as err:  # already gone (broken as stale): nothing to release
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    while True:
        try:
            mlflow_client.create_registered_model(name, description=owner)
            break
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held = mlflow_client.get_registered_model(name)
        except MlflowException:
            continue  # released between our two calls
        if held.description == owner or time.time() - held.creation_timestamp / 1000 > cfg.lock_timeout_seconds:
            release()
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} held by {held.description!r} for over {cfg.lock_timeout_seconds} s; if no "
                               f"register is running, delete the registered model {name!r}")
        time.sleep(0.2)
    try:
        yield
    finally:
        release()


def settle_alias(
    cfg: RegisterConfig, tracking: TrackingConfig, mlflow_client, version: str, gate: dict[str, str],
    report: EvalReport,
) -> dict[str, str]:
    """Give `version` the alias its gate decided, moving the champion alias by compare-and-set; returns the gate
    tags as finally decided (decided again when another version took the champion alias since)."""
    if gate["lmforge.gate.decision"] != "promoted":
        mlflow_client.set_registered_model_alias(cfg.model_name, cfg.challenger_alias, version)
        return gate
    with promotion_lock(mlflow_client, cfg, f"{cfg.model_name} v{version}"):
        for _ in range(MAX_PROMOTION_ROUNDS):
            holder = alias_holder(mlflow_client, cfg)
            if holder != version and holder != gate["lmforge.gate.champion_version"]:
                # another version became champion since the decision: compare against that one
                gate = decide(cfg, tracking, mlflow_client, report)
                for key, value in gate.items():
                    mlflow_client.set_model_version_tag(cfg.model_name, version, key, value)
                if gate["lmforge.gate.decision"] != "promoted":
                    mlflow_client.set_registered_model_alias(cfg.model_name, cfg.challenger_alias, version)
                    return gate
                continue
            mlflow_client.set_registered_model_alias(cfg.model_name, cfg.champion_alias, version)
            if alias_holder(mlflow_client, cfg) == version:  # re-check: a writer outside the lock (a person) wins
                return gate
    raise RuntimeError(f"{cfg.model_name} v{version}: the champion alias kept moving during {MAX_PROMOTION_ROUNDS} "
                       "promotion rounds; rerun register")


def version_ref(cfg: RegisterConfig, tracking: TrackingConfig, mlflow_client, version: str, run_id: str):
    aliases = mlflow_client.get_model_version(cfg.model_name, version).aliases
    alias = cfg.champion_alias if cfg.champion_alias in aliases else next(iter(aliases), "")
    return ModelVersionRef(name=cfg.model_name, version=version, alias=alias,
                           model_uri=f"models:/{cfg.model_name}/{version}", run_id=run_id, tracking_uri=tracking.uri())


def run_register(
    cfg: RegisterConfig, tracking: TrackingConfig, run_id: str, ckpt: CheckpointRef, report: EvalReport,
    base: EvalReport | None = None,
) -> ModelVersionRef:
    """Register `ckpt` with its eval `report` and run the gate; a rerun after a crash at any step finishes the same
    version."""
    from mlflow.exceptions import MlflowException

    from models.pyfunc import save_chat_model
    from tasks.registry.model_card import model_card

    t0 = time.time()
    mlflow_client = client(tracking)
    version = existing_version(mlflow_client, cfg, report)
    if version is not None and (version.tags or {}).get(DONE_TAG) == "true":
        # Aliases may have moved since; report the one the version holds now.
        mlflow_client.set_tag(run_id, "lmforge.registered_as", f"models:/{cfg.model_name}/{version.version}")
        return version_ref(cfg, tracking, mlflow_client, str(version.version), version.run_id)
    if version is None:
        with tempfile.TemporaryDirectory(prefix="lmforge-register-") as tmp:
            model_dir = save_chat_model(ckpt.dir / ckpt.checkpoint, Path(tmp) / "model", Path(tmp) / "staging")
            mlflow_client.log_artifacts(run_id, str(model_dir), artifact_path="model")
        source = f"{mlflow_client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
        try:
            mlflow_client.create_registered_model(cfg.model_name, description="lmforge chat model; see version cards.")
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {f"{METRIC_TAG}{k}": repr(float(v)) for k, v in report.metrics.items()}
        tags |= {f"{EVAL_SET_TAG}{k}": v for k, v in read_eval_sets(report).items()}
        tags |= {EVAL_REPORT_TAG: report.manifest_sha256, "lmforge.checkpoint": ckpt.manifest_sha256}
        tags |= decide(cfg, tracking, mlflow_client, report, base)
        version = mlflow_client.create_model_version(cfg.model_name, source, run_id=run_id, tags=tags)
    number, version_run = str(version.version), version.run_id or run_id
    recorded = mlflow_client.get_model_version(cfg.model_name, number).tags or {}
    gate = {k: v for k, v in recorded.items() if k.startswith("lmforge.gate.")}
    gate = settle_alias(cfg, tracking, mlflow_client, number, gate, report)
    promote = gate["lmforge.gate.decision"] == "promoted"
    champion_score = float(gate["lmforge.gate.champion_score"])
    card_gate = {"decision": gate["lmforge.gate.decision"], "alias": gate["lmforge.gate.alias"],
                 "reason": gate["lmforge.gate.reason"], "metric": cfg.gate_metric,
                 "new": report.metrics.get(cfg.gate_metric), "champion": None if math.isnan(champion_score) else
                 champion_score, "champion_version": gate["lmforge.gate.champion_version"] or None}
    card = model_card(cfg, tracking, version_run, ckpt, report, card_gate, version=number)
    mlflow_client.log_text(version_run, card, f"model_card_v{number}.md")
    for name in ("report.json", "report.md"):  # the eval report next to the model it describes
        if (report.dir / name).is_file():
            mlflow_client.log_artifact(version_run, str(report.dir / name), artifact_path="evaluate")
    mlflow_client.update_model_version(cfg.model_name, number, description=card)
    mlflow_client.log_metric(version_run, "register/promoted", float(promote))
    mlflow_client.log_metric(version_run, "register/seconds", time.time() - t0)
    mlflow_client.set_model_version_tag(cfg.model_name, number, DONE_TAG, "true")
    return version_ref(cfg, tracking, mlflow_client, number, version_run)


@task(name="register", retries=1)
def register(
    cfg: RegisterConfig, tracking: TrackingConfig, run_id: str, ckpt: CheckpointRef, report: EvalReport,
    base: EvalReport | None = None,
) -> ModelVersionRef:
    """`base`: the evaluation of the imported model `ckpt` was adapted from, which it must beat first."""
    return run_register(cfg, tracking, run_id, ckpt, report, base=base)
