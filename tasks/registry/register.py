"""Register stage: log the pyfunc model (the chat model, or a classifier: `ModelPackage`) to the pipeline's MLflow
run, register a new version, run the gate. Every lmforge model registers here, through the one gate and lock.

The promotion gate moves alias `champion` to the new version only when it beats the current champion on the same
eval set: the gate metric (default val bits per byte) must improve by more than `gate_margin`, and no guard metric
(downstream accuracies) may drop by more than `guard_tolerance`, both significantly: a paired bootstrap over the
documents and items both versions scored (`significance`, the `items.json` of each eval report) at
`gate_confidence`, widened by `seed_noise`; without per-item results on either side, the points are compared and
the reason says so. Metrics are compared only when both versions were
scored on the same data (the `eval_sets` fingerprints in the eval report); when the champion was scored on other
data, it is re-scored on this version's eval sets from its packaged checkpoint (`rescore_champion`), so models
trained on different crawls or with different tokenizers still compare on identical bytes. The first version of a model
becomes champion; a refused one gets `challenger`. The decision, its reason and both scores are recorded as version tags
and in the version's description, next to the model card (`tasks.registry.model_card`).

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
from typing import TYPE_CHECKING, Any, Literal

from prefect import task
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.core.artifacts import CheckpointRef, EvalReport, ModelVersionRef
from tasks.core.tracking import TrackingConfig, client
from tasks.evaluate.items import ITEMS_FILE, ItemScores, load_items

if TYPE_CHECKING:
    from tasks.registry.significance import PairedDifference

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
    gate_confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="One-sided confidence of the paired bootstrap: the gain's bound "
        "must clear gate_margin (a guard's drop must be beyond guard_tolerance) at this level to count.",
    )
    gate_resamples: int = Field(default=2000, ge=1000, description="Bootstrap resamples of the paired items.")
    gate_seed: int = Field(default=0, description="Seed of the bootstrap draws, so a decision is reproducible.")
    seed_noise: dict[str, float] = Field(
        default_factory=dict, description="Metric -> its standard deviation between training runs that differ only "
        "in their seed (bench/gate_noise.py measures it); widens the bootstrap bounds by that noise. Unlisted: 0, "
        "the eval items' sampling only.",
    )
    seed_noise_runs: int = Field(
        default=0, ge=0, description="How many runs measured seed_noise (k >= 2): the run noise is then drawn from "
        "Student's t with k - 1 degrees of freedom, as the standard deviation is an estimate (4 runs: the 95 % "
        "bound at 2.35 sigma*sqrt(2), not 1.64); 0 = seed_noise taken as exact. bench/gate_noise.py and `lmforge ablate` print both.",
    )
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

    @field_validator("seed_noise_runs")
    @classmethod
    def _runs_measure_a_spread(cls, runs: int) -> int:
        from tasks.registry.significance import check_seed_noise_runs

        return check_seed_noise_runs(runs)


def seed_noise_flags(metric: str, std: float, runs: int) -> str:
    """The `lmforge … --set` flags that give the gate a measured spread between same-config runs of `metric`
    (`seed_noise`) and how many runs measured it (`seed_noise_runs`)."""
    return f"--set 'registry.seed_noise={{\"{metric}\": {std:.4f}}}' --set registry.seed_noise_runs={runs}"


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
    """The eval set a metric was measured on: `val_bpb` -> `val`, `hellaswag_acc` -> `hellaswag`, `core_20` and
    `core/arc_easy_acc` -> `core`."""
    return metric.rsplit("_", 1)[0] if metric.startswith("text/") else metric.split("/", 1)[0].split("_", 1)[0]


def same_eval_set(
    metric: str, new: dict[str, float], new_sets: dict[str, str], old: dict[str, float] | None, old_sets: dict[str, str]
) -> bool:
    group = metric_group(metric)
    return metric in new and metric in (old or {}) and bool(new_sets.get(group)) and new_sets.get(group) == old_sets.get(group)


def rescore_champion(
    tracking: TrackingConfig, champion, report: EvalReport
) -> tuple[dict[str, float], dict[str, str], dict[str, ItemScores]]:
    """The champion's metrics, eval-set fingerprints and per-item results on this report's eval sets, from the
    checkpoint packaged in its registered model."""
    import mlflow

    from models.hardware.devices import resolve_device
    from tasks.evaluate.evaluate import rescore

    with tempfile.TemporaryDirectory(prefix="lmforge-champion-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=champion.source, dst_path=tmp, tracking_uri=tracking.uri())
        return rescore(Path(local) / "artifacts" / "checkpoint", report, str(resolve_device("auto")))


def improvement(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` (positive = better), whatever the metric's direction."""
    return old - new if lower_is_better(metric) else new - old


def paired_difference(cfg: RegisterConfig, metric: str, new_items: dict[str, ItemScores] | None,
                      old_items: dict[str, ItemScores] | None) -> PairedDifference | None:
    """The seeded paired bootstrap of `metric` (new - old), or None when either side has no per-item results."""
    from tasks.registry.significance import paired_bootstrap  # numpy: loaded when a gate runs, not with the CLI

    new_scores, old_scores = (new_items or {}).get(metric), (old_items or {}).get(metric)
    if new_scores is None or old_scores is None or not set(new_scores.ids) & set(old_scores.ids):
        return None
    return paired_bootstrap(new_scores, old_scores, cfg.gate_resamples, cfg.gate_confidence, cfg.gate_seed,
                            cfg.seed_noise.get(metric, 0.0), cfg.seed_noise_runs)


def signed(x: float) -> str:
    from tasks.registry.significance import signed as typeset

    return typeset(x)


def point_note(side: str) -> str:
    return f"point comparison: {side} has no per-item results"


def gain_verdict(metric: str, new: float, old: float, margin: float, against: str, test: PairedDifference | None,
                 side_missing: str) -> tuple[bool, str]:
    """(better by more than `margin`?, reason): significantly so when per-item results pair, else by the points."""
    if test is None:
        gain = improvement(metric, new, old)
        if gain <= margin:
            return False, (f"{metric} {new:.4f} vs {against} {old:.4f}: not better by more than {margin} "
                           f"({point_note(side_missing)})")
        return True, (f"{metric} {new:.4f} beats {against} {old:.4f} by {gain:.4f} (margin {margin}; "
                      f"{point_note(side_missing)})")
    bound = test.gain_bound(lower_is_better(metric))
    level = f"{test.confidence * 100:g} %"
    if bound <= margin:
        return False, (f"{test.describe()} vs {against} {old:.4f}: not significant (the gain's {level} bound "
                       f"{signed(bound)} does not clear margin {margin})")
    return True, (f"{test.describe()}: {metric} {new:.4f} beats {against} {old:.4f} (the gain's {level} bound "
                  f"{signed(bound)} clears margin {margin})")


def drop_verdict(metric: str, new: float, old: float, tolerance: float, test: PairedDifference | None) -> bool:
    """Did `metric` get worse by more than `tolerance`: significantly so when per-item results pair, else by the
    points?"""
    if test is None:
        return improvement(metric, new, old) < -tolerance
    return test.drop_bound(lower_is_better(metric)) < -tolerance


def gate_decision(
    cfg: RegisterConfig, new: dict[str, float], new_sets: dict[str, str], old: dict[str, float] | None,
    old_sets: dict[str, str], new_items: dict[str, ItemScores] | None = None,
    old_items: dict[str, ItemScores] | None = None,
) -> tuple[bool, str]:
    """(promote?, reason). `old` is None when the model has no champion yet. With per-item results on both sides
    (`new_items`, `old_items`), the gain and the guards' drops must be significant (a paired bootstrap at
    `gate_confidence`); without them the points are compared, and the reason says so."""
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
    missing = "this version" if metric not in (new_items or {}) else "the champion"
    promote, reason = gain_verdict(metric, new[metric], old[metric], cfg.gate_margin, "champion",
                                   paired_difference(cfg, metric, new_items, old_items), missing)
    if not promote:
        return False, reason
    for guard in cfg.guard_metrics:
        if not comparable(guard):
            continue
        test = paired_difference(cfg, guard, new_items, old_items)
        if drop_verdict(guard, new[guard], old[guard], cfg.guard_tolerance, test):
            how = f"significantly: {test.describe()}" if test is not None else point_note("a side")
            return False, (f"{guard} dropped from {old[guard]:.4f} to {new[guard]:.4f} (tolerance "
                           f"{cfg.guard_tolerance}; {how})")
    return True, reason


def base_decision(cfg: RegisterConfig, new: dict[str, float], base: dict[str, float],
                  new_items: dict[str, ItemScores] | None = None,
                  base_items: dict[str, ItemScores] | None = None) -> tuple[bool, str]:
    """(passes?, reason) of a model adapted from an imported base, against that base on the same eval sets: the
    domain (gate) metric must improve, and general text may not get worse by more than `general_tolerance`
    (catastrophic forgetting); both by the gate's rule (significant when per-item results pair, else points)."""
    metric = cfg.gate_metric
    missing = "this version" if metric not in (new_items or {}) else "the base"
    evidence = ""
    if metric in new and metric in base:
        test = paired_difference(cfg, metric, new_items, base_items)
        better, reason = gain_verdict(metric, new[metric], base[metric], 0.0, "base", test, missing)
        if not better:
            return False, f"{reason}: adapting did not improve on its base"
        evidence = f"; {test.describe()}" if test is not None else f"; {point_note(missing)}"
    # general_metrics guard what the start could already do: general text for continued pretraining, domain bpb for
    # preference tuning (the DPO flow), so the refusal names the metric rather than assuming which one it guards
    for general in cfg.general_metrics:
        if general not in new or general not in base:
            continue
        test = paired_difference(cfg, general, new_items, base_items)
        if drop_verdict(general, new[general], base[general], cfg.general_tolerance, test):
            how = f"; {test.describe()}" if test is not None else ""
            return False, (f"{general} rose from base {base[general]:.4f} to {new[general]:.4f}, more than "
                           f"general_tolerance {cfg.general_tolerance}{how}: the adapted model forgot what its "
                           "base knew")
    kept = ", ".join(f"{g} {base[g]:.4f} → {new[g]:.4f}" for g in cfg.general_metrics if g in new and g in base)
    before, after = base.get(metric, float("nan")), new.get(metric, float("nan"))
    return True, f"beats its base on {metric} ({before:.4f} → {after:.4f}{evidence})" + (
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


def champion_items(mlflow_client, champion, scores: dict[str, float] | None) -> dict[str, ItemScores]:
    """The per-item results the champion was registered with (`evaluate/items.json` in its run), each kept only
    when it still adds up to the champion's recorded metric: a run that registered two models (a base and its
    adaptation) holds the later one's file. {} for a champion registered before items.json."""
    if champion.run_id is None or f"evaluate/{ITEMS_FILE}" not in {
            f.path for f in mlflow_client.list_artifacts(champion.run_id, "evaluate")}:
        return {}
    with tempfile.TemporaryDirectory(prefix="lmforge-items-") as tmp:
        items = load_items(Path(mlflow_client.download_artifacts(champion.run_id, f"evaluate/{ITEMS_FILE}", tmp)))
    scores = scores or {}
    return {name: s for name, s in items.items()
            if name in scores and math.isclose(s.aggregate(), scores[name], rel_tol=1e-6, abs_tol=1e-12)}


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
    new_items = load_items(report.dir)
    passes, base_reason = (base_decision(cfg, report.metrics, base.metrics, new_items, load_items(base.dir))
                           if base is not None else (True, ""))
    rescored = False
    if passes:  # a model that does not beat its base is refused before any champion is compared
        new_sets = read_eval_sets(report)
        old_items = champion_items(mlflow_client, champion, old) if champion is not None else {}
        # scored on other data, or (registered before items.json) with no per-item results to pair with
        rescored = champion is not None and cfg.rescore_champion and (
            not same_eval_set(cfg.gate_metric, report.metrics, new_sets, old, old_sets)
            or (cfg.gate_metric in new_items and cfg.gate_metric not in old_items))
        if rescored:
            old, old_sets, old_items = rescore_champion(tracking, champion, report)
        promote, reason = gate_decision(cfg, report.metrics, new_sets, old, old_sets, new_items, old_items)
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


class ModelPackage(BaseModel):
    """What a registered version carries: which MLflow pyfunc packages which directory. Every lmforge model goes
    through the one `run_register` (gate, lock, compare-and-set, idempotence); only this differs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["chat", "classifier"] = Field(
        description="The chat model (`models.packaging.pyfunc.save_chat_model`) or a text classifier "
        "(`models.packaging.pyfunc.save_classifier_model`).")
    source: str = Field(description="Directory packaged: a training checkpoint (chat) or a classifier directory.")
    summary: str = Field(default="", description="Model card: what the version is beyond the checkpoint it holds "
                         "or builds on (a classifier: its head, labels and scores).")

    def save(self, path: Path, workdir: Path) -> Path:
        from models.packaging.pyfunc import save_chat_model, save_classifier_model

        save = save_chat_model if self.kind == "chat" else save_classifier_model
        return save(self.source, path, workdir)

    def description(self) -> str:
        """The registered model's description (each version's card is its own description)."""
        return "lmforge chat model; see version cards." if self.kind == "chat" else "lmforge text classifier"


def run_register(
    cfg: RegisterConfig, tracking: TrackingConfig, run_id: str, ckpt: CheckpointRef, report: EvalReport,
    base: EvalReport | None = None, package: ModelPackage | None = None,
) -> ModelVersionRef:
    """Register `ckpt` with its eval `report` and run the gate; a rerun after a crash at any step finishes the same
    version. `package`: what the version carries, by default the chat model of `ckpt`; a classifier passes its own,
    and `ckpt` is then the checkpoint it was fine-tuned from (the card's architecture, tokenizer and data)."""
    from mlflow.exceptions import MlflowException

    from tasks.registry.model_card import model_card

    package = package or ModelPackage(kind="chat", source=str(ckpt.dir / ckpt.checkpoint))
    t0 = time.time()
    mlflow_client = client(tracking)
    version = existing_version(mlflow_client, cfg, report)
    if version is not None and (version.tags or {}).get(DONE_TAG) == "true":
        # Aliases may have moved since; report the one the version holds now.
        mlflow_client.set_tag(run_id, "lmforge.registered_as", f"models:/{cfg.model_name}/{version.version}")
        return version_ref(cfg, tracking, mlflow_client, str(version.version), version.run_id)
    if version is None:
        with tempfile.TemporaryDirectory(prefix="lmforge-register-") as tmp:
            model_dir = package.save(Path(tmp) / "model", Path(tmp) / "staging")
            mlflow_client.log_artifacts(run_id, str(model_dir), artifact_path="model")
        source = f"{mlflow_client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
        try:
            mlflow_client.create_registered_model(cfg.model_name, description=package.description())
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
    card = model_card(cfg, tracking, version_run, ckpt, report, card_gate, version=number, summary=package.summary)
    mlflow_client.log_text(version_run, card, f"model_card_v{number}.md")
    for name in ("report.json", "report.md", ITEMS_FILE):  # the eval report next to the model it describes
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
