"""The lm-evaluation-harness adapter: its answers agree with our own scorers, and a local-data lm-eval task runs."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance
from lm_fixtures import MemorisedLM, ScriptedLM, UniformLM, tiny_tokenizer

from tasks.evaluate.lm_eval_adapter import LmforgeLM


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def request(kind: str, *args) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def test_loglikelihood_prefers_the_memorised_continuation(tok):
    seq = [tok.bos_id, *tok.encode("Debian is a free"), *tok.encode(" operating system")]
    lm = LmforgeLM.from_objects(MemorisedLM([seq], tok.vocab_size), tok)
    (good, good_greedy), (bad, bad_greedy) = lm.loglikelihood(
        [request("loglikelihood", "Debian is a free", " operating system"), request("loglikelihood", "Debian is a free", " lunch")])
    assert good > bad and good_greedy and not bad_greedy


def test_rolling_loglikelihood_of_a_uniform_model(tok):
    text = "Python has a large standard library. " * 5
    lm = LmforgeLM.from_objects(UniformLM(tok.vocab_size, seq_len=16), tok)
    [total] = lm.loglikelihood_rolling([request("loglikelihood_rolling", text)])
    assert total == pytest.approx(-len(tok.encode(text)) * math.log(tok.vocab_size), rel=1e-6)


def test_generate_until_cuts_at_the_stop_string(tok):
    lm = LmforgeLM.from_objects(ScriptedLM(tok.encode("Paris.\nQuestion: next")), tok)
    [answer] = lm.generate_until([request("generate_until", "Capital of France?", {"until": ["\n"], "max_gen_toks": 20})])
    assert answer == "Paris."


@pytest.mark.slow
def test_a_local_lm_eval_task_runs_end_to_end(tok, tmp_path, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    rows = [{"context": "Debian is a free", "choices": ["operating system", "banana"], "gold": 0},
            {"context": "The quick brown", "choices": ["JSON", "fox"], "gold": 1}]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tiny_mc.yaml").write_text(
        "task: lmforge_tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'mc.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{context}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: '{{gold}}'\n"
        "metric_list:\n  - metric: acc\n")
    memorised = [[tok.bos_id, *tok.encode(r["context"]), *tok.encode(" " + r["choices"][r["gold"]])] for r in rows]
    lm = LmforgeLM.from_objects(MemorisedLM(memorised, tok.vocab_size), tok)
    results = simple_evaluate(model=lm, tasks=["lmforge_tiny_mc"], task_manager=TaskManager(include_path=str(tmp_path)))
    assert results["results"]["lmforge_tiny_mc"]["acc,none"] == 1.0
