"""Generative task fine-tuning: chrF and exact match by hand, and an SFT run that learns a memorisable task."""

from __future__ import annotations

import json

import pytest
from lm_fixtures import checkpoint_ref, tiny_gpt, tiny_tokenizer, write_checkpoint

from tasks.finetune.gen_task import GenTaskConfig, chrf, exact_match, read_pairs, run_gen_task
from tasks.finetune.sft import SFTConfig

PAIRS = [("red", "rouge"), ("blue", "bleu"), ("green", "vert"), ("black", "noir")]


def test_chrf_and_exact_match_by_hand():
    assert chrf(["the cat"], ["the cat"]) == pytest.approx(100.0)
    # "abc" vs "abd": unigrams 2/3, bigrams 1/2, trigrams 0/1, no longer n-grams: P = R = 7/18, so F = 7/18
    assert chrf(["abc"], ["abd"]) == pytest.approx(100 * 7 / 18)
    assert chrf(["a b c"], ["abd"]) == pytest.approx(100 * 7 / 18)  # whitespace is ignored
    assert chrf(["xyz"], ["abc"]) == 0.0
    assert exact_match(["le  chat", "un chien"], ["le chat", "une chienne"]) == 0.5


def test_read_pairs_names_a_bad_row(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\n{"input": "a"}\n')
    with pytest.raises(ValueError, match="row 2 needs string 'input' and 'output'"):
        read_pairs(bad)


@pytest.mark.slow
def test_sft_learns_a_memorisable_task(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_gpt(tok.vocab_size)
    base = checkpoint_ref(write_checkpoint(tmp_path / "base", model, tok), model)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in PAIRS))
    # rows of 24 tokens hold one conversation (17-19 tokens) each: packed neighbours would leak context the eval prompt lacks
    sft = SFTConfig(
        max_steps=300, batch_size=4, seq_len=24, lr=5e-3, warmup_steps=5, eval_every=0, device="cpu", threads=1
    )
    cfg = GenTaskConfig(
        train_file=str(data), val_file=str(data), user_template="French: {input}", sft=sft, max_new_tokens=8
    )
    ref = run_gen_task(cfg, base, tmp_path / "out")
    assert ref.metrics["task_n"] == 4 and ref.metrics["task_exact_match"] >= 0.75 and ref.metrics["task_chrf"] > 75
    rows = [json.loads(line) for line in (ref.dir / "predictions.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in rows] == [o for _, o in PAIRS]
    assert (ref.checkpoint.dir / ref.checkpoint.checkpoint / "model.safetensors").is_file()
