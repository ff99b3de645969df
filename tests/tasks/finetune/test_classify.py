"""Classification fine-tuning: metrics checked by hand, learning a learnable fixture, registry round trip, and
concurrent registrations through the registry's one gate (lock, compare-and-set, idempotence)."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lm_fixtures import checkpoint_ref, tiny_gpt, tiny_tokenizer, write_checkpoint
from resume_fixtures import assert_same, assert_same_checkpoint, kill_after

from tasks.finetune.classify import ClassifyConfig, read_examples, register_classifier, run_classify
from tasks.finetune.classify_metrics import classification_metrics, confusion_matrix

TOPICS = {
    "animal": ["cat", "dog", "horse", "cow", "sheep", "goat"],
    "vehicle": ["car", "bus", "train", "truck", "bike", "boat"],
    "food": ["bread", "apple", "cheese", "soup", "rice", "plum"],
}
FILLER = ["the", "a", "is", "near", "with", "and", "very", "old", "my", "big"]


def topic_rows(n: int, seed: int) -> list[dict]:
    """The label is learnable: each text holds two or three words of its topic among filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(TOPICS)[i % 3]
        words = rng.choices(TOPICS[label], k=rng.randint(2, 3)) + rng.choices(FILLER, k=4)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classify")
    tok = tiny_tokenizer()
    model = tiny_gpt(tok.vocab_size)
    base = checkpoint_ref(write_checkpoint(tmp / "base", model, tok), model)
    train = tmp / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in topic_rows(180, seed=0)))
    val = tmp / "val.parquet"
    pq.write_table(pa.Table.from_pylist(topic_rows(60, seed=1)), val)
    return tmp, base, train, val


def test_f1_matches_a_hand_computed_confusion_matrix():
    truth = [0] * 6 + [1] * 6 + [2] * 4
    predicted = [0, 0, 0, 0, 0, 1] + [0, 0, 1, 1, 1, 2] + [2, 2, 2, 2]
    matrix = confusion_matrix(truth, predicted, 3)
    assert matrix == [[5, 1, 0], [2, 3, 1], [0, 0, 4]]
    metrics = classification_metrics(matrix, ["a", "b", "c"])
    # a: TP 5, FP 2, FN 1 -> 10/13; b: TP 3, FP 1, FN 3 -> 6/10; c: TP 4, FP 1, FN 0 -> 8/9
    assert metrics["cls_f1_a"] == pytest.approx(10 / 13) and metrics["cls_f1_b"] == pytest.approx(0.6)
    assert metrics["cls_f1_c"] == pytest.approx(8 / 9)
    assert metrics["cls_macro_f1"] == pytest.approx((10 / 13 + 0.6 + 8 / 9) / 3)
    assert metrics["cls_accuracy"] == 12 / 16 and metrics["cls_n"] == 16
    # a label neither present nor predicted scores 0 and still counts in the macro average
    assert classification_metrics([[2, 0], [0, 0]], ["x", "y"])["cls_macro_f1"] == 0.5


def test_read_examples_names_a_bad_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": 1}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match="row 2 needs a string 'text'"):
        read_examples(bad)


@pytest.mark.parametrize("pooling", ["mean", pytest.param("last", marks=pytest.mark.slow)])
def test_learns_a_learnable_label_well_above_chance(setup, pooling):
    tmp, base, train, val = setup
    cfg = ClassifyConfig(
        base="unused",
        train_file=str(train),
        val_file=str(val),
        pooling=pooling,
        epochs=4,
        batch_size=16,
        lr=1e-3,
        head_lr=1e-2,
        max_len=32,
        seed=0,
    )
    ref = run_classify(cfg, base, tmp / f"out-{pooling}")
    assert ref.labels == ["animal", "food", "vehicle"]
    assert ref.metrics["cls_accuracy"] >= 0.8 and ref.metrics["cls_macro_f1"] >= 0.75  # chance is 1/3
    saved = json.loads((ref.dir / "metrics.json").read_text())
    assert sum(map(sum, saved["confusion"])) == 60 and (ref.dir / "confusion.png").stat().st_size > 1000
    stats = ref.manifest()["stats"]
    assert stats["last_loss"] < stats["first_loss"]


def test_holds_out_a_deterministic_val_split_and_integer_labels(setup, tmp_path):
    _tmp, base, _, _ = setup
    rows = [{"text": r["text"], "label": list(TOPICS).index(r["label"])} for r in topic_rows(90, seed=3)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = ClassifyConfig(base="unused", train_file=str(data), epochs=1, max_len=16, freeze_base=True)
    first, second = run_classify(cfg, base, tmp_path / "a"), run_classify(cfg, base, tmp_path / "b")
    assert first.labels == ["0", "1", "2"] and first.val_set == second.val_set
    assert 5 <= first.metrics["cls_n"] <= 35  # about val_fraction 0.2 of 90 rows


@pytest.mark.slow
def test_registered_classifier_predicts_labels_and_probabilities(setup):
    import mlflow
    import pandas as pd

    from tasks.core.tracking import TrackingConfig, client, open_run

    tmp, base, train, val = setup
    cfg = ClassifyConfig(
        base="unused", train_file=str(train), val_file=str(val), epochs=4, lr=1e-3, head_lr=1e-2, max_len=32, seed=0
    )
    ref = run_classify(cfg, base, tmp / "out-register")
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    client(tracking).create_experiment(tracking.experiment, artifact_location=(tmp / "artifacts").as_uri())
    version = register_classifier(cfg, tracking, open_run(tracking, "classify", {}, {}), ref, base)
    assert version.alias == "champion"
    run = client(tracking).get_run(version.run_id)
    assert run.data.metrics["classify/cls_macro_f1"] == ref.metrics["cls_macro_f1"]
    assert "classify/confusion.png" in [a.path for a in client(tracking).list_artifacts(version.run_id, "classify")]
    mlflow.set_tracking_uri(tracking.uri())
    mlflow.set_registry_uri(tracking.uri())
    model = mlflow.pyfunc.load_model(f"models:/{cfg.model_name}@champion")
    out = model.predict(pd.DataFrame({"text": ["the cat and a dog near my goat", "bus car truck with a train"]}))
    assert list(model.predict({"text": ["my apple and the old bread with rice"]})["label"]) == [
        "food"
    ]  # a dict of columns works too
    assert list(out["label"]) == ["animal", "vehicle"]
    probs = out[["prob_animal", "prob_food", "prob_vehicle"]].sum(axis=1)
    assert probs.tolist() == pytest.approx([1.0, 1.0]) and (out["probability"] > 0.5).all()


@pytest.mark.slow
def test_concurrent_classifier_registrations_are_serialised_by_the_gate(setup, tmp_path, monkeypatch):
    """Two classifiers registered at once, both decided before either moves an alias: one champion, both versions
    registered, and the second gate compares against the first (never both against "no champion yet")."""
    import threading
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from mlflow.tracking import MlflowClient

    from tasks.core.tracking import TrackingConfig, client, open_run

    tmp, base, train, val = setup
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client(tracking).create_experiment(tracking.experiment, artifact_location=(tmp_path / "artifacts").as_uri())
    cfgs = {seed: ClassifyConfig(base="unused", train_file=str(train), val_file=str(val), epochs=1, max_len=16,
                                 freeze_base=True, seed=seed, model_name="race-classifier") for seed in (1, 2)}
    refs = {seed: run_classify(cfg, base, tmp_path / f"out-{seed}") for seed, cfg in cfgs.items()}
    assert refs[1].val_set == refs[2].val_set  # the same val rows: the gate compares them

    both_decided = threading.Barrier(2)
    create_version = MlflowClient.create_model_version

    def decided_then_wait(self, *args, **kwargs):  # each version is created with its gate decided against "none"
        version = create_version(self, *args, **kwargs)
        both_decided.wait(timeout=120)
        return version

    monkeypatch.setattr(MlflowClient, "create_model_version", decided_then_wait)

    run_ids = {seed: open_run(tracking, f"classify-{seed}", {}, {}) for seed in (1, 2)}  # as each flow did before

    def register(seed: int):
        return register_classifier(cfgs[seed], tracking, run_ids[seed], refs[seed], base)

    with ThreadPoolExecutor(2) as pool:
        futures = {pool.submit(register, seed): seed for seed in (1, 2)}
        versions = {futures[future]: future.result() for future in as_completed(futures, timeout=300)}
    monkeypatch.undo()

    mlflow_client = client(tracking)
    registered = mlflow_client.search_model_versions("name='race-classifier'")
    assert sorted(str(v.version) for v in registered) == ["1", "2"]
    tags = {str(v.version): v.tags for v in registered}
    assert all(t["lmforge.register.done"] == "true" for t in tags.values())
    (first,) = [v for v, t in tags.items() if t["lmforge.gate.champion_version"] == ""]
    (second,) = [v for v, t in tags.items() if v != first]
    assert tags[second]["lmforge.gate.champion_version"] == first  # decided again, against the first
    f1 = {str(versions[seed].version): refs[seed].metrics["cls_macro_f1"] for seed in (1, 2)}
    champion = str(mlflow_client.get_model_version_by_alias("race-classifier", "champion").version)
    assert champion == (second if f1[second] > f1[first] else first)
    assert tags[second]["lmforge.gate.decision"] == ("promoted" if champion == second else "refused")
    assert not any(m.name.endswith(".promotion-lock") for m in mlflow_client.search_registered_models())
    assert "Text classifier" in mlflow_client.get_model_version("race-classifier", first).description  # its card

    again = register(1)  # a rerun registers nothing new: the version is found by the classify stage's manifest
    assert again.version == versions[1].version
    assert len(mlflow_client.search_model_versions("name='race-classifier'")) == 2


def test_read_examples_names_the_line_that_is_not_json(tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"text": "fine", "label": 1}\n\n{"text": "cut off", "lab\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:3: not JSON"):
        read_examples(bad)
    bad.write_text('["text", "label"]\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:1: expected a JSON object, got list"):
        read_examples(bad)


@pytest.mark.slow
def test_sigkill_and_resume_equals_an_uninterrupted_run(setup, tmp_path):
    from safetensors.torch import load_file

    from models.weights.checkpoint import step_dirs
    from tasks.finetune.classify import CHECKPOINTS, CLASSIFIER_DIR

    _tmp, base, train, val = setup  # 180 rows, 16 a step: 12 steps an epoch (dropout 0.1: the RNG resumes too)
    cfg = ClassifyConfig(base="unused", train_file=str(train), val_file=str(val), epochs=2, batch_size=16, max_len=16,
                         lr=1e-3, head_lr=1e-2, seed=0, device="cpu", checkpoint_every=4)
    whole = run_classify(cfg, base, tmp_path / "whole")
    out = tmp_path / "killed"
    done = kill_after(run_classify, [cfg, base], out, "step_000008", steps_dir=out / CHECKPOINTS)
    assert done and "step_000024" not in done and not (out / "manifest.json").exists(), done
    resumed = run_classify(cfg, base, out)
    assert resumed.metrics == whole.metrics
    last = [p.name for p in step_dirs(whole.dir / CHECKPOINTS)]
    assert last == ["step_000024"] == [p.name for p in step_dirs(resumed.dir / CHECKPOINTS)]
    assert_same_checkpoint(whole.dir / CHECKPOINTS / last[0], resumed.dir / CHECKPOINTS / last[0])
    a, b = (load_file(str(ref.dir / CLASSIFIER_DIR / "classifier.safetensors")) for ref in (whole, resumed))
    assert_same(a, b, "classifier")
