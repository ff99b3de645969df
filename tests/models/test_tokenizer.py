"""The tokenizer wrapper: byte-level round trip, special tokens, save/load and its hash."""

from __future__ import annotations

import pytest

from models.text.tokenizer import SPECIAL_TOKENS, Tokenizer

TEXTS = [
    "The river carries the old letter to the village market. " * 4,
    "Ünïcödé ✓ — 日本語のテキスト",
    "def f(x):\n\treturn x",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(TEXTS * 10, vocab_size=400)


def test_round_trip_of_any_text(tok):
    for text in [*TEXTS, "never seen: Ωmega 🙂 \x00 tabs\tand\nnewlines  "]:
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text


def test_training_learns_merges(tok):
    text = "The river carries the old letter"
    assert len(tok.encode(text)) < len(text.encode()) / 2  # frequent words became single tokens


def test_special_tokens_have_fixed_ids_and_text_never_becomes_one(tok):
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2)
    text = "<|user|>hi<|end|><|assistant|>" + "".join(SPECIAL_TOKENS)
    for ids in (tok.encode(text), tok.encode_batch([text, "x"])[0]):
        assert not set(ids) & set(range(len(SPECIAL_TOKENS)))  # the literal text is bytes, not control ids
        assert tok.decode(ids) == tok.decode(ids, skip_special_tokens=True) == text
    control = [tok.token_to_id("<|user|>"), *tok.encode("hi"), tok.token_to_id("<|end|>")]  # inserted by id
    assert tok.decode(control) == "<|user|>hi<|end|>" and tok.decode(control, skip_special_tokens=True) == "hi"


def test_save_load_and_hash(tok, tmp_path):
    from tasks.core.artifacts import file_sha256

    path = tok.save(tmp_path / "tokenizer.json")
    loaded = Tokenizer.load(path)
    assert loaded.encode(TEXTS[1]) == tok.encode(TEXTS[1]) and loaded.vocab_size == tok.vocab_size
    assert loaded.encode("<|bos|>") == tok.encode("<|bos|>") != [tok.bos_id]  # a loaded tokenizer too
    assert loaded.sha256 == tok.sha256 == file_sha256(path)
    other = Tokenizer.train(TEXTS[:1] * 10, vocab_size=300)
    assert other.sha256 != tok.sha256


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenize stage"):
        Tokenizer.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="too small"):
        Tokenizer.train(TEXTS, vocab_size=100)
