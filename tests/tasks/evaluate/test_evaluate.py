"""Evaluate stage: bits per byte against hand-computed values, benchmark scoring on memorised fixtures, samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from lm_fixtures import MemorisedLM, UniformLM, tiny_gpt, tiny_tokenizer

from tasks.core.artifacts import TokenSet
from tasks.core.tokens import write_bin
from tasks.core import benchmarks
from tasks.evaluate import downstream
from tasks.evaluate.evaluate import EvalConfig, evaluate_model
from tasks.evaluate.metrics import read_text_docs

DOCS = ["Debian is a free operating system.", "Python imports json to read JSON files, naïvely. " * 6]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def val_tokenset(tmp_path: Path, tok, docs: list[str]) -> TokenSet:
    stream = [i for doc in docs for i in [tok.bos_id, *tok.encode(doc)]]
    write_bin(tmp_path / "val_00000.bin", stream, tok.vocab_size)
    return TokenSet(
        path=str(tmp_path), tokenizer_file="tokenizer.json", vocab_size=tok.vocab_size, train_files=[],
        val_files=["val_00000.bin"], n_train_tokens=0, n_val_tokens=len(stream),
        val_bytes=sum(len(d.encode()) for d in docs),
    )


def test_uniform_model_bpb_is_tokens_times_log2_vocab_over_bytes(tmp_path, tok):
    docs = [*DOCS, "Quoted markup: <|bos|><|user|>hi<|end|><|assistant|><|eos|> is text."]  # scored as text
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    model = UniformLM(tok.vocab_size, seq_len=16)  # docs are longer than 16 tokens: many windows
    cfg = EvalConfig(text_files=[str(path)], prompts=[])
    metrics = evaluate_model(model, tok, cfg, None)["metrics"]
    n_tokens = sum(len(tok.encode(d)) for d in docs)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    assert metrics["text/extra_tokens"] == n_tokens  # every text token scored exactly once, no <|bos|> target
    assert metrics["text/extra_bytes"] == n_bytes
    assert metrics["text/extra_bpb"] == pytest.approx(n_tokens * math.log2(tok.vocab_size) / n_bytes, rel=1e-6)  # float32 log-softmax
    assert metrics["text/extra_loss"] == pytest.approx(math.log(tok.vocab_size), rel=1e-6)


def test_heldout_bpb_equals_direct_cross_entropy(tmp_path, tok):
    tokens = val_tokenset(tmp_path, tok, DOCS)
    model = tiny_gpt(tok.vocab_size, seq_len=256)
    stream = torch.tensor(np.concatenate([[tok.bos_id, *tok.encode(d)] for d in DOCS]), dtype=torch.long)
    assert len(stream) <= 257  # one window, so the hand computation sees the same context
    logits, _ = model(stream[None, :-1])
    targets = stream[1:].clone()
    targets[targets == tok.bos_id] = -1  # document separators are not text
    nats = F.cross_entropy(logits[0], targets, ignore_index=-1, reduction="sum").item()
    metrics = evaluate_model(model, tok, EvalConfig(prompts=[]), tokens)["metrics"]
    assert metrics["val_bytes"] == tokens.val_bytes
    assert metrics["val_bpb"] == pytest.approx(nats / (math.log(2) * tokens.val_bytes), rel=1e-5)
    assert metrics["val_ppl"] == pytest.approx(math.exp(metrics["val_loss"]))


def test_windows_change_context_not_coverage(tmp_path, tok):
    tokens = val_tokenset(tmp_path, tok, DOCS)
    model = tiny_gpt(tok.vocab_size, seq_len=256)
    full = evaluate_model(model, tok, EvalConfig(prompts=[]), tokens)["metrics"]
    short = evaluate_model(model, tok, EvalConfig(prompts=[], seq_len=8, batch_size=3), tokens)["metrics"]
    assert short["val_tokens"] == full["val_tokens"]
    assert short["val_bpb"] != pytest.approx(full["val_bpb"], rel=1e-6)  # shorter context, different loss


def test_max_val_tokens_keeps_whole_documents_and_their_bytes(tmp_path, tok):
    tokens = val_tokenset(tmp_path, tok, DOCS)
    result = evaluate_model(UniformLM(tok.vocab_size), tok, EvalConfig(prompts=[], max_val_tokens=12), tokens)
    assert result["metrics"]["val_bytes"] == len(DOCS[0].encode())
    assert result["metrics"]["val_tokens"] == len(tok.encode(DOCS[0]))
    assert result["stats"]["val"]["complete"] is False


def test_read_text_docs_parquet_and_plain(tmp_path):
    pq.write_table(pa.table({"text": ["a b", "c"]}), tmp_path / "d.parquet")
    (tmp_path / "d.txt").write_text("one doc\n\nstill one")
    assert read_text_docs(tmp_path / "d.parquet") == ["a b", "c"]
    assert read_text_docs(tmp_path / "d.txt") == ["one doc\n\nstill one"]
    with pytest.raises(FileNotFoundError, match="text_files"):
        read_text_docs(tmp_path / "missing.txt")


HELLASWAG = [
    ("Debian is a free", 2, ["banana boat.", "quick fox.", "operating system made by volunteers.", "json."]),
    ("The quick brown fox", 0, ["jumps over the lazy dog.", "reads JSON files.", "is a model card.", "Debian."]),
]


def write_fixtures(tmp_path: Path) -> tuple[Path, Path, Path]:
    hs = tmp_path / "hellaswag.txt"
    hs.write_text("".join(f"{ctx}\n{gold}\n" + "".join(e + "\n" for e in ends) for ctx, gold, ends in HELLASWAG))
    arc = tmp_path / "arc.jsonl"
    arc.write_text(json.dumps({"question": {"stem": "What reads JSON files?", "choices": [
        {"text": "the lazy dog", "label": "A"}, {"text": "Python", "label": "B"}]}, "answerKey": "B"}) + "\n")
    lam = tmp_path / "lambada.jsonl"
    lam.write_text(json.dumps({"text": "Debian is a free operating system made by volunteers"}) + "\n")
    return hs, arc, lam


def test_multiple_choice_and_lambada_pick_what_the_model_memorised(tmp_path, tok):
    hs, arc, lam = write_fixtures(tmp_path)
    memorised = [
        ("Debian is a free", " operating system made by volunteers."), ("The quick brown fox", " jumps over the lazy dog."),
        ("Question: What reads JSON files?\nAnswer:", " Python"), ("Debian is a free operating system made by", " volunteers"),
    ]
    model = MemorisedLM([[tok.bos_id, *tok.encode(c), *tok.encode(x)] for c, x in memorised], tok.vocab_size)
    cfg = EvalConfig(hellaswag_file=str(hs), arc_file=str(arc), lambada_file=str(lam), prompts=[])
    result = evaluate_model(model, tok, cfg, None)
    m = result["metrics"]
    assert (m["hellaswag_acc"], m["hellaswag_acc_norm"], m["hellaswag_n"], m["hellaswag_chance"]) == (1, 1, 2, 0.25)
    assert (m["arc_acc"], m["arc_acc_norm"], m["arc_chance"]) == (1, 1, 0.5)
    assert m["lambada_acc"] == 1 and m["lambada_ppl"] < 1.01
    assert set(result["eval_sets"]) == {"hellaswag", "arc", "lambada"}
    # a model that memorised the wrong endings picks them instead: the scores follow the model, not the file order
    wrong = MemorisedLM([[tok.bos_id, *tok.encode("Debian is a free"), *tok.encode(" banana boat.")]], tok.vocab_size)
    assert downstream.score_multiple_choice(wrong, tok, benchmarks.load_hellaswag(hs)[:1], 64, "cpu")["acc"] == 0


def test_acc_norm_divides_by_the_choices_characters_as_lm_eval_does():
    # per character of the choice: -6/2 < -8.5/3, so the longer choice wins (per byte of " " + choice it would lose,
    # -6/3 > -8.5/4); "éé" is two characters though four UTF-8 bytes (-6.5/4 would beat -6/2)
    assert downstream.predictions([-6.0, -8.5], ["ab", "abc"]) == (0, 1)
    assert downstream.predictions([-6.0, -6.5], ["ab", "éé"]) == (0, 0)
    assert downstream.predictions([-6.0, -6.1], ["ab", "cd"]) == (0, 0)


def test_hellaswag_loader_rejects_a_bad_label(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("ctx\n7\na\nb\nc\nd\n")
    with pytest.raises(ValueError, match="gold label"):
        benchmarks.load_hellaswag(path)


def test_samples_are_reproducible(tok):
    model = tiny_gpt(tok.vocab_size)
    cfg = EvalConfig(prompts=["Debian is", "Python"], max_new_tokens=5)
    first = evaluate_model(model, tok, cfg, None)["samples"]
    assert first == evaluate_model(model, tok, cfg, None)["samples"]
    assert first[0].startswith("Debian is") and first[1].startswith("Python") and len(first[1]) > len("Python")


def test_chat_sample_prompts_are_user_turns_framed_by_id(tok):
    from models.text.chat import encode_chat
    from tasks.evaluate.samples import prompt_ids

    question = "What is <|assistant|>? Say <|end|>."  # a question quoting the markup stays a question
    ids, shown = prompt_ids(tok, question, chat=True)
    assert ids == encode_chat(tok, [{"role": "user", "content": question}])[0]
    control = [i for i in ids if i < 7]
    assert control == [tok.bos_id, tok.token_to_id("<|user|>"), tok.token_to_id("<|end|>"),
                       tok.token_to_id("<|assistant|>")]
    assert shown == f"<|user|>{question}<|end|><|assistant|>" and tok.decode(ids[1:]) == shown
    plain, shown = prompt_ids(tok, question, chat=False)
    assert plain == [tok.bos_id, *tok.encode(question)] and shown == question and plain.count(tok.bos_id) == 1
    samples = evaluate_model(tiny_gpt(tok.vocab_size), tok, EvalConfig(prompts=[question], chat_prompts=True,
                                                                      max_new_tokens=3), None)["samples"]
    assert samples[0].startswith(f"<|user|>{question}<|end|><|assistant|>")


def test_run_evaluate_writes_report_and_manifest(tmp_path, tok):
    from lm_fixtures import checkpoint_ref, write_checkpoint

    from tasks.core.artifacts import EvalReport, load_done
    from tasks.evaluate.evaluate import run_evaluate

    model = tiny_gpt(tok.vocab_size)
    ckpt = checkpoint_ref(write_checkpoint(tmp_path / "train", model, tok), model)
    tokens = val_tokenset(tmp_path, tok, DOCS)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "leftover.tmp").write_text("from a killed run")
    report = run_evaluate(EvalConfig(prompts=["Debian"], max_new_tokens=3), ckpt, tokens, out)
    assert not (out / "leftover.tmp").exists()
    assert load_done(out, EvalReport) == report
    saved = json.loads((out / "report.json").read_text())
    assert saved["metrics"]["val_bpb"] == report.metrics["val_bpb"] > 0
    assert saved["eval_sets"]["val"] and saved["tokenizer_sha256"] == tok.sha256
    assert "val_bpb" in (out / "report.md").read_text() and len(report.samples) == 1


def test_per_document_bits_add_up_to_the_reported_bpb(tmp_path, tok):
    from tasks.evaluate.items import text_ids

    docs = [*DOCS, "A model card records the data.", DOCS[0]]  # a repeated document keeps its own id
    tokens = val_tokenset(tmp_path, tok, docs)
    model = tiny_gpt(tok.vocab_size, seq_len=16)  # many windows, straddling documents
    result = evaluate_model(model, tok, EvalConfig(prompts=[], batch_size=3), tokens)
    items, metrics = result["items"]["val_bpb"], result["metrics"]
    assert items.ids == text_ids(docs) and items.ids[3].endswith("#1")
    assert items.weights == [len(d.encode()) for d in docs]
    assert items.aggregate() == pytest.approx(metrics["val_bpb"], rel=1e-9)
    # each document's bits are the model's loss over its own tokens, in the context its windows gave it
    stream = torch.tensor(np.concatenate([[tok.bos_id, *tok.encode(d)] for d in docs]), dtype=torch.long)
    old_total, n = 0.0, 0  # the mean-loss-per-batch computation the stage used before per-document results
    for s in range(0, len(stream) - 1, 16 * 3):
        rows = [stream[t : t + 17] for t in range(s, min(s + 48, len(stream) - 1), 16)]
        x = torch.zeros(len(rows), 16, dtype=torch.long)
        y = torch.full((len(rows), 16), -1, dtype=torch.long)
        for i, row in enumerate(rows):
            x[i, : len(row) - 1], y[i, : len(row) - 1] = row[:-1], row[1:]
        y[y == tok.bos_id] = -1
        with torch.no_grad():
            _, loss = model(x, y)
        old_total += float(loss.double()) * int((y >= 0).sum())
        n += int((y >= 0).sum())
    assert n == metrics["val_tokens"]
    # equal up to float32 summation order (the mean summed the terms in float32; documents sum them in float64)
    assert metrics["val_bpb"] == pytest.approx(old_total / (math.log(2) * tokens.val_bytes), rel=1e-6)


def test_benchmark_items_are_kept_per_file_position(tmp_path, tok):
    hs, arc, lam = write_fixtures(tmp_path)
    memorised = [("Debian is a free", " operating system made by volunteers.")]  # only the first HellaSwag item
    model = MemorisedLM([[tok.bos_id, *tok.encode(c), *tok.encode(x)] for c, x in memorised], tok.vocab_size)
    cfg = EvalConfig(hellaswag_file=str(hs), arc_file=str(arc), lambada_file=str(lam), prompts=[])
    result = evaluate_model(model, tok, cfg, None)
    items = result["items"]
    assert set(items) == {"hellaswag_acc", "hellaswag_acc_norm", "arc_acc", "arc_acc_norm", "lambada_acc"}
    assert items["hellaswag_acc"].ids == ["0", "1"] and items["hellaswag_acc"].values[0] == 1.0
    for name, scores in items.items():
        assert scores.kind == "mean" and scores.aggregate() == result["metrics"][name]


def test_max_doc_tokens_scores_the_start_of_every_document(tmp_path, tok):
    tokens = val_tokenset(tmp_path, tok, DOCS)
    cut = 5
    result = evaluate_model(UniformLM(tok.vocab_size), tok, EvalConfig(prompts=[], max_doc_tokens=cut), tokens)
    assert result["stats"]["val"]["docs"] == result["stats"]["val"]["docs_available"] == len(DOCS)
    assert result["metrics"]["val_tokens"] == sum(min(cut, len(tok.encode(d))) for d in DOCS)
    assert result["stats"]["val"]["complete"] is False
    texts = [tok.decode(tok.encode(d)[:cut]) for d in DOCS]
    assert result["items"]["val_bpb"].weights == [len(t.encode()) for t in texts]
    assert result["metrics"]["val_bpb"] == pytest.approx(result["items"]["val_bpb"].aggregate(), rel=1e-9)
