"""Register stage: the promotion gate against a real MLflow registry on SQLite, and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lm_fixtures import checkpoint_ref, tiny_gpt, tiny_tokenizer, write_checkpoint

from tasks.core.artifacts import EvalReport, finish_stage
from tasks.core.tracking import TrackingConfig, client, open_run
from tasks.registry.register import (
    RegisterConfig, champion_scores, existing_version, gate_decision, metric_group, run_register,
)


class Crash(BaseException):
    """A killed process: a BaseException, so no `except Exception` on the way up catches it."""


# Each register step ends with one MLflow client call: the crash lands right after it ("after"), or, where the
# step's last call is made again later, right before the next step's first call.
STEP_CALLS = {"artifacts_logged": ("log_artifacts", "after"), "version_created": ("create_model_version", "after"),
              "alias_set": ("log_text", "before"), "card_written": ("update_model_version", "after")}


def at_step(monkeypatch, step: str, action) -> None:
    """Run `action(step)` where register finishes `step`, by wrapping the MLflow client call that marks it."""
    from mlflow.tracking import MlflowClient

    method, when = STEP_CALLS[step]
    original = getattr(MlflowClient, method)

    def wrapped(self, *args, **kwargs):
        if when == "before":
            action(step)
        result = original(self, *args, **kwargs)
        if when == "after":
            action(step)
        return result

    monkeypatch.setattr(MlflowClient, method, wrapped)


def crash(step: str) -> None:
    raise Crash(step)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("register")
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    # TrackingConfig leaves the artifact root to the server for explicit URIs; keep the artifacts in tmp
    client(tracking).create_experiment(tracking.experiment, artifact_location=(tmp / "artifacts").as_uri())
    tok = tiny_tokenizer()
    model = tiny_gpt(tok.vocab_size)
    ckpt = checkpoint_ref(write_checkpoint(tmp / "train", model, tok), model)
    return tmp, tracking, ckpt


def make_report(tmp: Path, name: str, metrics: dict[str, float], eval_sets: dict[str, str]) -> EvalReport:
    out = tmp / f"eval-{name}"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"metrics": metrics, "eval_sets": eval_sets, "samples": []}))
    return finish_stage(out, EvalReport(path=str(out), metrics=metrics), files=["report.json"])


def register_with(setup, name: str, metrics: dict[str, float], eval_sets: dict[str, str] | None = None, **cfg):
    tmp, tracking, ckpt = setup
    run_id = open_run(tracking, f"run-{name}", {"crawl": {"seeds": ["http://127.0.0.1/"]}}, {})
    report = make_report(tmp, name, metrics, eval_sets or {"val": "set-a", "hellaswag": "hs-1"})
    return run_register(RegisterConfig(**cfg), tracking, run_id, ckpt, report), report


def test_gate_promotes_first_and_better_refuses_worse(setup):
    _, tracking, _ = setup
    mlflow_client = client(tracking)
    first, _ = register_with(setup, "first", {"val_bpb": 3.0, "hellaswag_acc_norm": 0.30})
    assert (first.version, first.alias) == ("1", "champion")

    worse, _ = register_with(setup, "worse", {"val_bpb": 3.2, "hellaswag_acc_norm": 0.31})
    assert worse.alias == "challenger"
    assert mlflow_client.get_model_version_by_alias("lmforge", "champion").version == 1
    tags = mlflow_client.get_model_version("lmforge", worse.version).tags
    assert tags["lmforge.gate.decision"] == "refused"
    assert (float(tags["lmforge.gate.new_score"]), float(tags["lmforge.gate.champion_score"])) == (3.2, 3.0)

    within_margin, _ = register_with(setup, "margin", {"val_bpb": 2.95}, gate_margin=0.1)
    assert within_margin.alias == "challenger"

    better, _ = register_with(setup, "better", {"val_bpb": 2.5, "hellaswag_acc_norm": 0.30})
    assert better.alias == "champion"
    champion = mlflow_client.get_model_version_by_alias("lmforge", "champion")
    assert str(champion.version) == better.version
    assert "beats champion 3.0000" in champion.tags["lmforge.gate.reason"]
    assert "## Limitations and known risks" in champion.description and "http://127.0.0.1/" in champion.description
    assert mlflow_client.get_model_version_by_alias("lmforge", "challenger").version == int(within_margin.version)

    other_data, _ = register_with(setup, "other-data", {"val_bpb": 1.0}, {"val": "set-b"}, rescore_champion=False)
    assert other_data.alias == "challenger"
    assert "same eval set" in mlflow_client.get_model_version("lmforge", other_data.version).tags["lmforge.gate.reason"]


def test_retry_returns_the_version_already_registered(setup):
    tmp, tracking, ckpt = setup
    run_id = open_run(tracking, "retry", {}, {})
    report = make_report(tmp, "retry", {"val_bpb": 9.0}, {"val": "set-a"})
    cfg = RegisterConfig(model_name="retry-model")
    first = run_register(cfg, tracking, run_id, ckpt, report)
    assert run_register(cfg, tracking, run_id, ckpt, report) == first
    assert len(client(tracking).search_model_versions("name='retry-model'")) == 1


@pytest.mark.slow
def test_champion_loads_from_the_registry_and_answers(setup):
    import mlflow

    _, tracking, _ = setup
    register_with(setup, "serve", {"val_bpb": 0.5}, model_name="served")
    mlflow.set_registry_uri(tracking.uri())
    mlflow.set_tracking_uri(tracking.uri())
    model = mlflow.pyfunc.load_model("models:/served@champion")
    answer = model.predict({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0.0})
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] <= 4


def test_guard_metric_drop_blocks_promotion():
    cfg = RegisterConfig(guard_tolerance=0.01)
    sets = {"val": "a", "arc": "x"}
    old = {"val_bpb": 2.0, "arc_acc_norm": 0.40}
    assert gate_decision(cfg, {"val_bpb": 1.9, "arc_acc_norm": 0.395}, sets, old, sets)[0] is True
    promote, reason = gate_decision(cfg, {"val_bpb": 1.9, "arc_acc_norm": 0.30}, sets, old, sets)
    assert promote is False and "arc_acc_norm dropped" in reason
    # a guard measured on a different ARC file is not compared
    assert gate_decision(cfg, {"val_bpb": 1.9, "arc_acc_norm": 0.30}, sets, old, {"val": "a", "arc": "y"})[0] is True
    # higher-is-better gate metric
    acc = RegisterConfig(gate_metric="arc_acc_norm", guard_metrics=[])
    assert gate_decision(acc, {"arc_acc_norm": 0.5}, sets, {"arc_acc_norm": 0.4}, sets)[0] is True
    assert gate_decision(acc, {"arc_acc_norm": 0.3}, sets, {"arc_acc_norm": 0.4}, sets)[0] is False


def test_metric_groups():
    assert [metric_group(m) for m in ("val_bpb", "hellaswag_acc_norm", "text/my_notes_bpb")] == [
        "val", "hellaswag", "text/my_notes"]


def val_tokens(tmp: Path, name: str, docs: list[str]):
    from tasks.core.artifacts import TokenSet
    from tasks.core.tokens import write_bin

    tok = tiny_tokenizer()
    (tmp / name).mkdir()
    write_bin(tmp / name / "val.bin", [i for d in docs for i in [tok.bos_id, *tok.encode(d)]], tok.vocab_size)
    return TokenSet(path=str(tmp / name), tokenizer_file="", vocab_size=tok.vocab_size, train_files=[],
                    val_files=["val.bin"], n_train_tokens=0, n_val_tokens=0,
                    val_bytes=sum(len(d.encode()) for d in docs))


def evaluated(tmp: Path, model_seed: int, val, name: str):
    """A tiny model (`model_seed`) scored by the evaluate stage on `val`: (checkpoint, report)."""
    from tasks.evaluate.evaluate import EvalConfig, run_evaluate

    tok = tiny_tokenizer()
    model = tiny_gpt(tok.vocab_size, seed=model_seed)
    ckpt = checkpoint_ref(write_checkpoint(tmp / f"train-{model_seed}", model, tok), model)
    (tmp / name).mkdir()
    return ckpt, run_evaluate(EvalConfig(prompts=[]), ckpt, val, tmp / name)


@pytest.mark.slow
def test_champion_is_rescored_on_the_new_eval_data(setup, tmp_path):
    _, tracking, _ = setup
    set_a = val_tokens(tmp_path, "a", ["Debian is a free operating system."])
    set_b = val_tokens(tmp_path, "b", ["Python reads JSON files."])
    cfg = RegisterConfig(model_name="rescored")
    ckpt_a, report_a = evaluated(tmp_path, 1, set_a, "eval-a")
    assert run_register(cfg, tracking, open_run(tracking, "a", {}, {}), ckpt_a, report_a).alias == "champion"
    ckpt_b, report_b = evaluated(tmp_path, 2, set_b, "eval-b")
    _, champion_on_b = evaluated(tmp_path, 1, set_b, "eval-a-on-b")  # what the gate must find for the champion on B
    second = run_register(cfg, tracking, open_run(tracking, "b", {}, {}), ckpt_b, report_b)
    tags = client(tracking).get_model_version("rescored", second.version).tags
    assert tags["lmforge.gate.champion_rescored"] == "true"
    assert float(tags["lmforge.gate.champion_score"]) == pytest.approx(champion_on_b.metrics["val_bpb"], rel=1e-6)
    better = report_b.metrics["val_bpb"] < champion_on_b.metrics["val_bpb"]
    assert second.alias == ("champion" if better else "challenger")


@pytest.mark.slow
def test_a_champion_scored_under_other_pins_is_rescored_and_the_card_shows_the_pins(setup, tmp_path, monkeypatch):
    from tasks.evaluate import pins

    _, tracking, _ = setup
    val = val_tokens(tmp_path, "val", ["Debian is a free operating system.", "Python reads JSON files."])
    cfg = RegisterConfig(model_name="pinned")

    def register(seed: int, name: str):
        ckpt, report = evaluated(tmp_path, seed, val, name)
        version = run_register(cfg, tracking, open_run(tracking, name, {}, {}), ckpt, report)
        return version, client(tracking).get_model_version("pinned", version.version)

    register(1, "v1")
    _, same_pins = register(2, "v2")
    assert same_pins.tags["lmforge.gate.champion_rescored"] == "false"  # same data, same pins: compared as recorded
    monkeypatch.setattr(pins, "SCORER_VERSION", pins.SCORER_VERSION + 1)
    _, bumped = register(3, "v3")
    assert bumped.tags["lmforge.gate.champion_rescored"] == "true"  # same data, another scorer: re-scored
    champion_seed = {"1": 1, "2": 2}[bumped.tags["lmforge.gate.champion_version"]]
    _, champion_now = evaluated(tmp_path, champion_seed, val, "champion-now")
    assert float(bumped.tags["lmforge.gate.champion_score"]) == pytest.approx(champion_now.metrics["val_bpb"], rel=1e-6)
    val_pin = json.loads((champion_now.dir / "report.json").read_text())["pins"]["files"]["val"]["val_docs.jsonl"]
    assert f"scorer version: {pins.SCORER_VERSION}" in bumped.description and val_pin in bumped.description


def test_serving_loads_the_registered_champion(setup, tmp_path, monkeypatch):
    """`lmforge serve` / `lmforge chat` start from a registry alias: the engine must load from what was registered."""
    import tempfile

    from tasks.serve.serve import ServeConfig, load_engine

    _, tracking, _ = setup
    register_with(setup, "served", {"val_bpb": 1.0})
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where load_engine downloads the checkpoint
    engine = load_engine(ServeConfig(model_uri="models:/lmforge@champion"), tracking)
    text, finish, prompt_tokens, completion_tokens = engine.complete(
        [{"role": "user", "content": "hello"}], max_tokens=4, temperature=0.0
    )
    assert isinstance(text, str) and prompt_tokens > 0 and 0 < completion_tokens <= 4
    assert engine.name == "lmforge@champion"
    champion = client(tracking).get_model_version_by_alias("lmforge", "champion")
    assert engine.version == champion.version  # what the chat page shows
    assert not list(tmp_path.iterdir())  # the download is gone once the weights are in memory


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("new, reason", [
    ({"val_bpb": NAN}, "val_bpb=nan"),
    ({"val_bpb": -INF}, "val_bpb=-inf"),  # "infinitely good" is a broken eval too
    ({"val_bpb": 1.0, "hellaswag_acc_norm": NAN}, "hellaswag_acc_norm=nan"),
    ({"val_bpb": 1.0, "toxicity_bad_word_rate": NAN}, "toxicity_bad_word_rate=nan"),
])
def test_non_finite_metrics_are_never_promoted(new, reason):
    cfg = RegisterConfig(safety_thresholds={"toxicity_bad_word_rate": 0.5})
    new = {"toxicity_bad_word_rate": 0.0, **new}
    sets = {"val": "a", "hellaswag": "h"}
    for old in (None, {"val_bpb": 2.0, "hellaswag_acc_norm": 0.3}):  # first version and against a champion
        promote, why = gate_decision(cfg, new, sets, old, sets)
        assert promote is False and reason in why and "never promoted" in why


def test_a_non_finite_champion_score_is_not_defended():
    sets = {"val": "a"}
    promote, why = gate_decision(RegisterConfig(), {"val_bpb": 2.0}, sets, {"val_bpb": NAN}, sets)
    assert promote is True and "non-finite nan" in why
    # a NaN guard on the champion is skipped, not compared (nan comparisons are always false)
    old = {"val_bpb": 3.0, "arc_acc_norm": NAN}
    assert gate_decision(RegisterConfig(), {"val_bpb": 2.0, "arc_acc_norm": 0.1}, sets | {"arc": "x"}, old,
                         sets | {"arc": "x"})[0] is True


def test_a_nan_first_version_becomes_challenger_in_the_registry(setup):
    ref, _ = register_with(setup, "nan-first", {"val_bpb": NAN}, model_name="nan-first")
    assert ref.alias == "challenger"
    tags = client(setup[1]).get_model_version("nan-first", ref.version).tags
    assert tags["lmforge.gate.decision"] == "refused" and "val_bpb=nan" in tags["lmforge.gate.reason"]


@pytest.mark.parametrize("step", ["artifacts_logged", "version_created", "alias_set", "card_written"])
def test_a_rerun_after_a_crash_finishes_the_same_version(setup, step, monkeypatch):
    tmp, tracking, ckpt = setup
    name = f"crash-{step.replace('_', '-')}"
    register_with(setup, f"{name}-base", {"val_bpb": 3.0}, model_name=name)
    run_id = open_run(tracking, f"run-{name}", {}, {})
    report = make_report(tmp, name, {"val_bpb": 2.0}, {"val": "set-a"})
    cfg = RegisterConfig(model_name=name)

    at_step(monkeypatch, step, crash)
    with pytest.raises(Crash):
        run_register(cfg, tracking, run_id, ckpt, report)
    monkeypatch.undo()
    ref = run_register(cfg, tracking, run_id, ckpt, report)
    assert (ref.version, ref.alias) == ("2", "champion")
    mlflow_client = client(tracking)
    assert len(mlflow_client.search_model_versions(f"name='{name}'")) == 2
    version = mlflow_client.get_model_version(name, "2")
    assert mlflow_client.get_model_version_by_alias(name, "champion").version == 2
    assert version.tags["lmforge.register.done"] == "true" and f"{name} v2" in version.description
    assert run_register(cfg, tracking, run_id, ckpt, report) == ref  # and once more: nothing changes


def test_a_rerun_after_a_crash_respects_a_champion_promoted_meanwhile(setup, monkeypatch):
    tmp, tracking, ckpt = setup
    register_with(setup, "meanwhile-base", {"val_bpb": 3.0}, model_name="meanwhile")
    run_id = open_run(tracking, "run-meanwhile", {}, {})
    report = make_report(tmp, "meanwhile", {"val_bpb": 2.0}, {"val": "set-a"})
    cfg = RegisterConfig(model_name="meanwhile")

    at_step(monkeypatch, "version_created", crash)
    with pytest.raises(Crash):
        run_register(cfg, tracking, run_id, ckpt, report)  # v2 decided "promote" against v1, then died
    monkeypatch.undo()
    better, _ = register_with(setup, "meanwhile-better", {"val_bpb": 1.0}, model_name="meanwhile")
    assert (better.version, better.alias) == ("3", "champion")
    ref = run_register(cfg, tracking, run_id, ckpt, report)
    assert (ref.version, ref.alias) == ("2", "challenger")  # re-decided against v3, not promoted over it
    assert client(tracking).get_model_version_by_alias("meanwhile", "champion").version == 3


def test_concurrent_gates_cannot_both_become_champion(setup, monkeypatch):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    tmp, tracking, ckpt = setup
    register_with(setup, "race-base", {"val_bpb": 3.0}, model_name="race")
    both_decided = threading.Barrier(2)  # both versions created, each decided "promote" against v1
    at_step(monkeypatch, "version_created", lambda step: both_decided.wait(timeout=120))

    def retrain(label: str, bpb: float):
        run_id = open_run(tracking, f"run-race-{label}", {}, {})
        report = make_report(tmp, f"race-{label}", {"val_bpb": bpb}, {"val": "set-a"})
        return run_register(RegisterConfig(model_name="race"), tracking, run_id, ckpt, report)

    with ThreadPoolExecutor(2) as pool:
        good, best = pool.submit(retrain, "good", 2.5), pool.submit(retrain, "best", 2.0)
        good, best = good.result(timeout=300), best.result(timeout=300)
    mlflow_client = client(tracking)
    assert str(mlflow_client.get_model_version_by_alias("race", "champion").version) == best.version
    tags = {ref.version: mlflow_client.get_model_version("race", ref.version).tags for ref in (good, best)}
    # serialised: whichever gate went second compared against the first one's outcome, never against stale v1
    if tags[good.version]["lmforge.gate.decision"] == "promoted":  # good went first: best must have beaten good
        assert tags[best.version]["lmforge.gate.champion_version"] == good.version
        assert tags[good.version]["lmforge.gate.champion_version"] == "1"
    else:  # best went first: good was refused against best
        assert tags[good.version]["lmforge.gate.champion_version"] == best.version and good.alias == "challenger"
    assert best.alias == "champion"
    assert not any(m.name.endswith(".promotion-lock") for m in mlflow_client.search_registered_models())


def test_an_adapted_model_must_beat_its_base_and_keep_general_text(setup):
    tmp, tracking, ckpt = setup
    cfg = {"model_name": "adapted", "general_metrics": ["text/general_bpb"], "general_tolerance": 0.05}
    sets = {"val": "domain-1", "text/general": "general-1"}
    base = make_report(tmp, "base", {"val_bpb": 1.20, "text/general_bpb": 1.00}, sets)

    def adapted(name: str, metrics: dict[str, float]):
        run_id = open_run(tracking, f"run-{name}", {}, {})
        report = make_report(tmp, name, metrics, sets)
        version = run_register(RegisterConfig(**cfg), tracking, run_id, ckpt, report, base=base)
        return version, client(tracking).get_model_version("adapted", version.version).tags

    worse_domain, tags = adapted("worse-domain", {"val_bpb": 1.25, "text/general_bpb": 0.99})
    assert worse_domain.alias == "challenger" and "did not improve on its base" in tags["lmforge.gate.reason"]
    forgot, tags = adapted("forgot", {"val_bpb": 1.00, "text/general_bpb": 1.08})  # first version, still refused
    assert forgot.alias == "challenger" and "text/general_bpb rose from base" in tags["lmforge.gate.reason"]
    good, tags = adapted("good", {"val_bpb": 1.05, "text/general_bpb": 1.03})
    assert good.alias == "champion" and tags["lmforge.gate.base"].startswith("beats its base on val_bpb")


def test_no_champion_is_told_apart_from_a_registry_error(setup, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
    from mlflow.tracking import MlflowClient

    mlflow_client = client(setup[1])
    assert champion_scores(mlflow_client, RegisterConfig(model_name="never-registered")) == (None, None, {})
    mlflow_client.create_registered_model("no-champion")  # a model without the alias
    assert champion_scores(mlflow_client, RegisterConfig(model_name="no-champion")) == (None, None, {})

    def outage(self, *args, **kwargs):
        raise MlflowException("registry down", error_code=TEMPORARILY_UNAVAILABLE)

    for method in ("get_model_version_by_alias", "search_model_versions"):
        monkeypatch.setattr(MlflowClient, method, outage)
    with pytest.raises(MlflowException, match="registry down"):
        champion_scores(mlflow_client, RegisterConfig(model_name="no-champion"))
    report = make_report(setup[0], "outage", {"val_bpb": 1.0}, {"val": "set-a"})
    with pytest.raises(MlflowException, match="registry down"):  # "none found" here would register a duplicate
        existing_version(mlflow_client, RegisterConfig(model_name="no-champion"), report)


def accuracy_items(metric: str, hits: list[int]):
    from tasks.evaluate.items import ItemScores

    return ItemScores(metric=metric, kind="mean", ids=[str(i) for i in range(len(hits))], values=[float(h) for h in hits])


def bpb_items(bits: list[float], nbytes: list[float]):
    from tasks.evaluate.items import ItemScores

    return ItemScores(metric="val_bpb", kind="ratio", ids=[f"doc{i}" for i in range(len(bits))], values=bits,
                      weights=nbytes)


def test_with_per_item_results_the_gate_needs_a_significant_gain_and_a_significant_drop():
    import random

    rng = random.Random(0)
    sets = {"val": "a", "arc": "x"}
    nbytes = [float(rng.randint(300, 900)) for _ in range(30)]
    old_bits = [b * rng.uniform(1.5, 2.5) for b in nbytes]

    def scores(bits, arc_hits):
        items = {"val_bpb": bpb_items(bits, nbytes), "arc_acc_norm": accuracy_items("arc_acc_norm", arc_hits)}
        return {name: s.aggregate() for name, s in items.items()}, items

    champion, champion_items = scores(old_bits, [1] * 60 + [0] * 40)
    cfg = RegisterConfig(guard_metrics=["arc_acc_norm"])
    # 3 % fewer bits on every document: significant; one ARC item lost: a drop, but not a significant one
    better, better_items = scores([b * 0.97 for b in old_bits], [1] * 59 + [0] * 41)
    promote, reason = gate_decision(cfg, better, sets, champion, sets, better_items, champion_items)
    assert promote is True and reason.startswith("val_bpb −") and "(95 %, 30 docs)" in reason
    assert gate_decision(cfg, better, sets, champion, sets)[0] is False  # the old point rule: any drop blocks
    # 20 ARC items lost: significant, blocks
    dropped, dropped_items = scores([b * 0.97 for b in old_bits], [1] * 40 + [0] * 60)
    promote, reason = gate_decision(cfg, dropped, sets, champion, sets, dropped_items, champion_items)
    assert promote is False and "arc_acc_norm dropped" in reason and "significantly" in reason
    # per-document noise around the same model: not significant, though the point estimate is better
    wobble = [b * (1.08 if i % 2 else 0.92) for i, b in enumerate(old_bits)]  # ±8 % per document
    scale = 0.998 * sum(old_bits) / sum(wobble)  # and 0.2 % better overall
    noisy, noisy_items = scores([b * scale for b in wobble], [1] * 60 + [0] * 40)
    promote, reason = gate_decision(cfg, noisy, sets, champion, sets, noisy_items, champion_items)
    assert noisy["val_bpb"] < champion["val_bpb"] and promote is False and "not significant" in reason
    # a margin the gain's bound must clear
    assert gate_decision(cfg.model_copy(update={"gate_margin": 0.5}), better, sets, champion, sets, better_items,
                         champion_items)[0] is False
