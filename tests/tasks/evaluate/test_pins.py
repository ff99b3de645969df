"""Pinned evaluation: every eval file's full sha256 and the scorer version in report.json, folded into the eval-set
fingerprints, so the gate calls results under other pins not comparable and a re-scored champion is comparable."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from lm_fixtures import checkpoint_ref, tiny_gpt, tiny_tokenizer, write_checkpoint

from tasks.core.artifacts import TokenSet
from tasks.core.tokens import write_bin
from tasks.evaluate import pins as pins_module
from tasks.evaluate.config import VAL_DOCS
from tasks.evaluate.evaluate import EvalConfig, evaluate_model, rescore, run_evaluate
from tasks.evaluate.pins import SCORER_VERSION, EvalPins
from tasks.registry.register import same_eval_set

VAL = ["A held-out page about Debian packages.", "Another held-out page, naïve about JSON."]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def eval_files(tmp: Path) -> dict[str, Path]:
    """One file per kind the evaluate stage reads: a text file, HellaSwag, ARC, LAMBADA, CrowS-Pairs."""
    files = {"text/notes": tmp / "notes.txt", "hellaswag": tmp / "hs.txt", "arc": tmp / "arc.jsonl",
             "lambada": tmp / "lambada.jsonl", "crows": tmp / "crows.csv"}
    files["text/notes"].write_text("Notes: the quick brown fox reads JSON files.")
    files["hellaswag"].write_text("The fox\n1\nsleeps.\njumps.\nreads.\nruns.\n")
    choices = [{"text": "Python", "label": "A"}, {"text": "a dog", "label": "B"}]
    question = {"stem": "What reads JSON?", "choices": choices}
    files["arc"].write_text(json.dumps({"question": question, "answerKey": "A"}) + "\n")
    files["lambada"].write_text(json.dumps({"text": "Debian is a free operating system"}) + "\n")
    with open(files["crows"], "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["sent_more", "sent_less", "bias_type"], ["He is loud.", "She is loud.", "gender"]])
    return files


def config(files: dict[str, Path]) -> EvalConfig:
    return EvalConfig(prompts=[], text_files=[str(files["text/notes"])], hellaswag_file=str(files["hellaswag"]),
                      arc_file=str(files["arc"]), lambada_file=str(files["lambada"]),
                      crows_pairs_file=str(files["crows"]))


def val_tokens(tmp: Path, tok) -> TokenSet:
    write_bin(tmp / "val.bin", [i for d in VAL for i in [tok.bos_id, *tok.encode(d)]], tok.vocab_size)
    return TokenSet(path=str(tmp), tokenizer_file="", vocab_size=tok.vocab_size, train_files=[], val_files=["val.bin"],
                    n_train_tokens=0, n_val_tokens=0, val_bytes=sum(len(d.encode()) for d in VAL))


def evaluated(tmp: Path, tok, name: str, files: dict[str, Path], seed: int = 0):
    model = tiny_gpt(tok.vocab_size, seed=seed)
    ckpt = checkpoint_ref(write_checkpoint(tmp / f"train-{name}", model, tok), model)
    (tmp / name).mkdir()
    report = run_evaluate(config(files), ckpt, val_tokens(tmp, tok), tmp / name)
    return ckpt, report, json.loads((report.dir / "report.json").read_text())


def test_the_report_pins_every_eval_file_by_its_full_sha256(tmp_path, tok):
    files = eval_files(tmp_path)
    _, report, saved = evaluated(tmp_path, tok, "eval", files)
    expected = {group: {str(path): hashlib.sha256(path.read_bytes()).hexdigest()} for group, path in files.items()}
    expected["val"] = {VAL_DOCS: hashlib.sha256((report.dir / VAL_DOCS).read_bytes()).hexdigest()}  # the file written
    assert saved["pins"] == {"scorer_version": SCORER_VERSION, "files": expected, "baselines": {}}
    assert all(len(digest) == 64 for group in expected.values() for digest in group.values())
    assert set(saved["eval_sets"]) == {"val", *files}
    shown = (report.dir / "report.md").read_text()
    assert f"scorer version: {SCORER_VERSION}" in shown and expected["arc"][str(files["arc"])] in shown


def test_another_scorer_version_or_file_is_another_eval_set(tmp_path, tok, monkeypatch):
    files = eval_files(tmp_path)
    model = tiny_gpt(tok.vocab_size)
    sets = evaluate_model(model, tok, config(files), None)["eval_sets"]
    assert evaluate_model(model, tok, config(files), None)["eval_sets"] == sets  # same pins, same fingerprints
    (tmp_path / "moved").mkdir()
    moved = {group: path.rename(tmp_path / "moved" / path.name) for group, path in files.items()}
    assert evaluate_model(model, tok, config(moved), None)["eval_sets"] == sets  # the bytes count, not the path
    monkeypatch.setattr(pins_module, "SCORER_VERSION", SCORER_VERSION + 1)
    bumped = evaluate_model(model, tok, config(moved), None)
    assert bumped["pins"]["scorer_version"] == SCORER_VERSION + 1
    assert all(bumped["eval_sets"][group] != sets[group] for group in sets)
    scores = bumped["metrics"]
    assert not same_eval_set("hellaswag_acc", scores, bumped["eval_sets"], scores, sets)  # the gate: not comparable
    assert same_eval_set("hellaswag_acc", scores, bumped["eval_sets"], scores, bumped["eval_sets"])


def test_a_baseline_version_is_part_of_its_groups_fingerprint_only():
    pins = EvalPins.current()
    before = pins.fold_all({"core": "abc", "val": "def"})
    pins.set_baseline("core", "v2")
    after = pins.fold_all({"core": "abc", "val": "def"})
    assert after["core"] != before["core"] and after["val"] == before["val"]
    assert "- `core` random baselines: v2" in pins.markdown()


@pytest.mark.slow
def test_a_rescored_champion_is_comparable_only_under_the_same_pins(tmp_path, tok, monkeypatch):
    files = eval_files(tmp_path)
    champion, _, _ = evaluated(tmp_path, tok, "champion", files, seed=1)
    _, report, saved = evaluated(tmp_path, tok, "challenger", files, seed=2)
    _, sets, _ = rescore(champion.dir / champion.checkpoint, report)
    assert sets == saved["eval_sets"]  # val re-read from val_docs.jsonl: the same documents, the same pins
    monkeypatch.setattr(pins_module, "SCORER_VERSION", SCORER_VERSION + 1)
    _, sets, _ = rescore(champion.dir / champion.checkpoint, report)
    assert set(sets) == set(saved["eval_sets"]) and all(sets[g] != saved["eval_sets"][g] for g in sets)
