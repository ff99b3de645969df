"""The noise-aware gate on real training runs: tiny models trained on CPU, evaluated with per-document results,
registered in MLflow on SQLite. Same data, another seed: not promoted; clearly more in-domain data: promoted."""

from __future__ import annotations

import shutil
import statistics

import pytest
from token_fixtures import make_token_set, tiny_train_config

from tasks.core.artifacts import EvalReport
from tasks.core.tracking import TrackingConfig, client, open_run
from tasks.evaluate.evaluate import EvalConfig, run_evaluate
from tasks.evaluate.items import ITEMS_FILE, load_items
from tasks.registry.register import RegisterConfig, gate_decision, run_register
from tasks.train.train import run_train

STEPS = 12


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Evaluated checkpoints: seeds 1-6 of the same recipe, and seed 1 trained on 8x the in-domain tokens."""
    root = tmp_path_factory.mktemp("gate-runs")
    tokens = make_token_set(root / "data", n_docs=120, vocab_size=400)

    def trained(name: str, **overrides):
        cfg = tiny_train_config(checkpoint_every=0, eval_every=0, **overrides)
        ckpt = run_train(cfg, tokens, root / f"train-{name}")
        (root / f"eval-{name}").mkdir()
        return ckpt, run_evaluate(EvalConfig(prompts=[], max_val_tokens=None), ckpt, tokens, root / f"eval-{name}")

    out = {f"seed{s}": trained(f"seed{s}", max_steps=STEPS, seed=s) for s in range(1, 7)}
    out["more-data"] = trained("more-data", max_steps=8 * STEPS, seed=1)
    return root, out


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate-mlflow")
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    client(cfg).create_experiment(cfg.experiment, artifact_location=(tmp / "artifacts").as_uri())
    return cfg


CALIBRATION_RUNS = 4  # seeds 3-6


def seed_noise(runs) -> float:
    """The recipe's val_bpb spread between seeds, as bench/gate_noise.py measures it (seeds 3-6: not the pair)."""
    return statistics.stdev(runs[f"seed{s}"][1].metrics["val_bpb"] for s in range(3, 3 + CALIBRATION_RUNS))


def register(tracking, name: str, run, cfg: RegisterConfig):
    ckpt, report = run
    version = run_register(cfg, tracking, open_run(tracking, name, {}, {}), ckpt, report)
    return version, client(tracking).get_model_version(cfg.model_name, version.version).tags


def test_a_same_data_retrain_with_another_seed_is_not_promoted(runs, tracking):
    _, found = runs
    cfg = RegisterConfig(model_name="seeds", guard_metrics=[], seed_noise={"val_bpb": seed_noise(found)},
                         seed_noise_runs=CALIBRATION_RUNS)
    first, _ = register(tracking, "seed1", found["seed1"], cfg)
    assert first.alias == "champion"
    second, tags = register(tracking, "seed2", found["seed2"], cfg)
    reason = tags["lmforge.gate.reason"]
    assert second.alias == "challenger" and "not significant" in reason
    assert tags["lmforge.gate.champion_rescored"] == "false"  # the champion's items came from its MLflow run
    n_docs = len(load_items(found["seed2"][1].dir)["val_bpb"].ids)
    assert reason.startswith("val_bpb ") and f"(95 %, {n_docs} docs)" in reason
    # the items logged next to the report are what the gate read
    logged = client(tracking).list_artifacts(client(tracking).get_model_version("seeds", "1").run_id, "evaluate")
    assert f"evaluate/{ITEMS_FILE}" in {f.path for f in logged}


def test_a_retrain_on_more_in_domain_data_is_promoted(runs, tracking):
    _, found = runs
    cfg = RegisterConfig(model_name="more-data", guard_metrics=[], seed_noise={"val_bpb": seed_noise(found)},
                         seed_noise_runs=CALIBRATION_RUNS)
    register(tracking, "champion", found["seed1"], cfg)
    better, tags = register(tracking, "more-data", found["more-data"], cfg)
    assert better.alias == "champion" and "clears margin 0.0" in tags["lmforge.gate.reason"]
    assert found["more-data"][1].metrics["val_bpb"] < found["seed1"][1].metrics["val_bpb"] - 0.05


def test_same_data_seeds_are_rarely_significant_once_their_noise_is_counted(runs):
    """Over every ordered pair of the six seeds: the point gate promotes half (the better of each pair), the new
    gate, with the recipe's seed noise counted, few."""
    _, found = runs
    sets = {"val": "same"}
    scored = [(r[1].metrics, load_items(r[1].dir)) for key, r in found.items() if key.startswith("seed")]
    noisy = RegisterConfig(guard_metrics=[], seed_noise={"val_bpb": seed_noise(found)},
                           seed_noise_runs=CALIBRATION_RUNS)
    pairs = [(a, b) for a in scored for b in scored if a is not b]
    items_only = RegisterConfig(guard_metrics=[])
    point = sum(gate_decision(noisy, a[0], sets, b[0], sets)[0] for a, b in pairs)
    by_items = sum(gate_decision(items_only, a[0], sets, b[0], sets, a[1], b[1])[0] for a, b in pairs)
    new = sum(gate_decision(noisy, a[0], sets, b[0], sets, a[1], b[1])[0] for a, b in pairs)
    assert point == len(pairs) // 2  # the point gate promotes the better of every pair: half of them
    assert new <= point // 2
    assert by_items > new  # the documents' spread alone does not cover a seed's: seed_noise is what stops the flips


def test_an_old_champion_without_items_is_rescored_to_pair_with(runs, tracking, tmp_path):
    root, found = runs
    ckpt, report = found["seed1"]
    old_style = tmp_path / "eval-before-items"  # what a version registered before items.json left behind
    shutil.copytree(report.dir, old_style)
    (old_style / ITEMS_FILE).unlink()
    old_report = EvalReport.model_validate({**report.model_dump(), "path": str(old_style)})
    cfg = RegisterConfig(model_name="old-champion", guard_metrics=[])
    run_register(cfg, tracking, open_run(tracking, "old", {}, {}), ckpt, old_report)
    _, tags = register(tracking, "new", found["more-data"], cfg)
    assert tags["lmforge.gate.champion_rescored"] == "true" and "docs)" in tags["lmforge.gate.reason"]
    # without a rescore the gate falls back to the points, and says so
    promote, reason = gate_decision(cfg, found["more-data"][1].metrics, {"val": "a"}, report.metrics, {"val": "a"},
                                    load_items(found["more-data"][1].dir), None)
    assert promote and "point comparison: the champion has no per-item results" in reason
