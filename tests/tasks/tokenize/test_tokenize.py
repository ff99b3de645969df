"""Tokenize stage and llm.c token shards: .bin header and contents, deterministic split, parallel encoding, gate."""

from __future__ import annotations

import numpy as np
import pytest
from token_fixtures import synthetic_docs, write_shards

from models.text.tokenizer import Tokenizer
from tasks.core.tokens import TokenLoader, iter_eval_batches, read_bin, write_bin
from tasks.tokenize.tokenize import TokenizeConfig, _doc_hash, is_val, run_tokenize


def test_bin_header_and_contents(tmp_path):
    tokens = [0, 5, 65535, 17]
    path = write_bin(tmp_path / "a.bin", tokens, vocab_size=65536)
    header = np.fromfile(path, dtype=np.int32, count=256)
    assert (header[0], header[1], header[2]) == (20240520, 1, 4) and not header[3:].any()
    assert path.stat().st_size == 256 * 4 + 4 * 2  # uint16 tokens
    assert read_bin(path).tolist() == tokens and read_bin(path, mmap=False).dtype == np.uint16
    big = write_bin(tmp_path / "b.bin", [1, 70000, 3])  # a vocab past 65536 needs uint32 (llm.c llama-3 header)
    header = np.fromfile(big, dtype=np.int32, count=3)
    assert header.tolist() == [20240801, 7, 3] and read_bin(big).tolist() == [1, 70000, 3]
    (tmp_path / "c.bin").write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ValueError, match="header says 4 tokens"):
        read_bin(tmp_path / "c.bin")


def test_loader_windows_resume_and_ranks(tmp_path):
    write_bin(tmp_path / "s0.bin", np.arange(100))
    write_bin(tmp_path / "s1.bin", np.arange(1000, 1030))
    files = [tmp_path / "s0.bin", tmp_path / "s1.bin"]
    loader = TokenLoader(files, batch_size=2, seq_len=4, world_size=1)
    x, y = loader.next_batch()
    assert x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]] and y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    # two ranks with batch 1 see exactly the rows of one process with batch 2
    r0, r1 = (TokenLoader(files, 1, 4, rank=r, world_size=2).next_batch()[0] for r in (0, 1))
    assert torch_cat(r0, r1) == x.tolist()
    for _ in range(20):  # walk past shard 0 into shard 1 and wrap around
        loader.next_batch()
    state = loader.state_dict()
    expected = [loader.next_batch()[0].tolist() for _ in range(5)]
    again = TokenLoader(files, 2, 4)
    again.load_state_dict(state)
    assert [again.next_batch()[0].tolist() for _ in range(5)] == expected and state["epoch"] >= 1
    with pytest.raises(ValueError, match="lower batch_size"):
        TokenLoader(files, batch_size=64, seq_len=4)


def test_shuffled_loader_visits_every_window_once_an_epoch_in_a_seeded_order_and_resumes(tmp_path):
    write_bin(tmp_path / "s0.bin", np.arange(100))
    write_bin(tmp_path / "s1.bin", np.arange(1000, 1030))
    files = [tmp_path / "s0.bin", tmp_path / "s1.bin"]
    sequential = TokenLoader(files, batch_size=2, seq_len=4)
    windows = [sequential.next_batch()[0][0, 0].item() for _ in range(len(sequential.starts))]
    loader = TokenLoader(files, batch_size=2, seq_len=4, shuffle_seed=7)
    epoch = [loader.next_batch()[0][0, 0].item() for _ in range(len(loader.starts))]
    assert sorted(epoch) == sorted(windows) and epoch != windows  # every window once, not in file order
    same, other = TokenLoader(files, 2, 4, shuffle_seed=7), TokenLoader(files, 2, 4, shuffle_seed=8)
    assert [same.next_batch()[0][0, 0].item() for _ in epoch] == epoch
    assert [other.next_batch()[0][0, 0].item() for _ in epoch] != epoch
    state = loader.state_dict()  # at the epoch's end: the next window opens a newly drawn epoch
    expected = [loader.next_batch()[0].tolist() for _ in range(5)]
    again = TokenLoader(files, 2, 4, shuffle_seed=7)
    again.load_state_dict(state)
    assert [again.next_batch()[0].tolist() for _ in range(5)] == expected and again.epoch == 1
    # ranks take their slices of the same shuffled global window
    r0, r1 = (TokenLoader(files, 1, 4, rank=r, world_size=2, shuffle_seed=7).next_batch()[0] for r in (0, 1))
    assert torch_cat(r0, r1) == TokenLoader(files, 2, 4, shuffle_seed=7).next_batch()[0].tolist()


def torch_cat(a, b):
    return a.tolist() + b.tolist()


def test_eval_batches_cover_each_token_once(tmp_path):
    write_bin(tmp_path / "v.bin", np.arange(50))
    batches = list(iter_eval_batches([tmp_path / "v.bin"], batch_size=4, seq_len=8))
    xs = [row for x, _ in batches for row in x.tolist()]
    assert [t for row in xs for t in row] == list(range(48)) and batches[-1][0].shape == (2, 8)


def test_run_tokenize_end_to_end(tmp_path):
    docs = synthetic_docs(120)
    shards = write_shards(tmp_path / "shards", [docs[:60], docs[60:]])
    cfg = TokenizeConfig(vocab_size=400, val_fraction=0.2, workers=2, min_bytes_per_token=0.0)
    ref = run_tokenize(cfg, shards, tmp_path / "tok")
    stats = ref.manifest()["stats"]
    assert ref.train_files == ["train_00000.bin", "train_00001.bin"] and ref.val_files
    assert stats["workers"] == 2 and stats["train_docs"] + stats["val_docs"] == 120
    expected_val = sum(is_val(f"doc-{s}-{i}", cfg) for s in range(2) for i in range(60))
    assert stats["val_docs"] == expected_val > 0
    assert ref.n_val_tokens == sum(len(read_bin(ref.dir / f)) for f in ref.val_files)
    assert stats["bytes_per_token"]["val"] == pytest.approx(ref.val_bytes / (ref.n_val_tokens - expected_val), rel=1e-3)
    tok = Tokenizer.load(ref.dir / ref.tokenizer_file)
    train0 = read_bin(ref.dir / "train_00000.bin").tolist()
    assert train0[0] == tok.bos_id  # every document starts with <|bos|>
    doc_texts = [tok.decode(part) for part in split_on(train0, tok.bos_id)]
    train_ids = sorted(
        (f"doc-0-{i}" for i in range(60) if not is_val(f"doc-0-{i}", cfg)), key=lambda d: _doc_hash(d, cfg)
    )
    assert doc_texts == [docs[int(d.rsplit("-", 1)[1])] for d in train_ids]  # exactly the train docs, in hash order
    again = run_tokenize(cfg.model_copy(update={"workers": 1}), shards, tmp_path / "tok2")
    assert [read_bin(again.dir / f).tolist() for f in again.val_files] == [
        read_bin(ref.dir / f).tolist() for f in ref.val_files
    ]


def split_on(ids: list[int], sep: int) -> list[list[int]]:
    parts: list[list[int]] = []
    for i in ids:
        if i == sep:
            parts.append([])
        else:
            parts[-1].append(i)
    return parts


def test_compression_gate_and_tiny_val(tmp_path):
    docs = synthetic_docs(4)
    shards = write_shards(tmp_path / "shards", [docs])
    with pytest.raises(ValueError, match="min_bytes_per_token"):
        run_tokenize(TokenizeConfig(vocab_size=300, workers=1, min_bytes_per_token=50.0), shards, tmp_path / "a")
    ref = run_tokenize(TokenizeConfig(vocab_size=300, val_fraction=0.01, workers=1), shards, tmp_path / "b")
    assert ref.val_files and ref.n_val_tokens > 0  # 4 docs at 1 %: one document is still held out


@pytest.mark.parametrize("n_docs", [1, 3])
def test_a_few_documents_all_hashed_into_val_still_train(tmp_path, n_docs):
    """A retrain's handful of new documents may all hash into val: the highest-hash one trains instead of the stage
    failing with nothing to train on (a CI run hit this with one new document)."""
    ids = [f"doc-0-{i}" for i in range(n_docs)]
    seed = next(f"s{k}" for k in range(100_000)
                if all(is_val(i, TokenizeConfig(split_seed=f"s{k}", val_fraction=0.3)) for i in ids))
    cfg = TokenizeConfig(vocab_size=300, val_fraction=0.3, split_seed=seed, workers=1, min_bytes_per_token=0.0)
    tokens = run_tokenize(cfg, write_shards(tmp_path / "shards", [synthetic_docs(n_docs)]), tmp_path / "tok")
    assert tokens.train_files and tokens.n_train_tokens > 0
    assert bool(tokens.val_files) == (n_docs > 1)  # the others stay in val


def test_special_token_text_in_documents_stays_text(tmp_path):
    """A crawled page quoting every control token ("<|assistant|>", "<|bos|>" …) is ordinary text in the shards."""
    import math

    from lm_fixtures import UniformLM

    from models.text.tokenizer import SPECIAL_TOKENS
    from tasks.evaluate.evaluate import EvalConfig, evaluate_model

    planted = "Chat markup: " + " ".join(SPECIAL_TOKENS) + " and <|user|>hi<|end|><|assistant|>Sure!<|end|><|eos|>"
    docs = [f"{doc[:80]} {planted} {doc[80:]}" for doc in synthetic_docs(40)]
    shards = write_shards(tmp_path / "shards", [docs[:20], docs[20:]])
    cfg = TokenizeConfig(vocab_size=400, val_fraction=0.25, workers=1, min_bytes_per_token=0.0)
    ref = run_tokenize(cfg, shards, tmp_path / "tok")
    tok = Tokenizer.load(ref.dir / ref.tokenizer_file)
    control = {tok.token_to_id(t) for t in SPECIAL_TOKENS}

    val_docs = [docs[s * 20 + i] for s in range(2) for i in range(20) if is_val(f"doc-{s}-{i}", cfg)]
    assert val_docs  # the val split holds planted documents too
    for files, expected in ((ref.train_files, [d for d in docs if d not in val_docs]), (ref.val_files, val_docs)):
        ids = [t for f in files for t in read_bin(ref.dir / f).tolist()]
        # the only control ids are the separators the stage put there, one before each document
        assert [t for t in ids if t in control] == [tok.bos_id] * len(expected)
        assert sorted(tok.decode(part) for part in split_on(ids, tok.bos_id)) == sorted(expected)

    # val bits per byte: the planted text is scored and counted as text, documents stay whole
    assert ref.val_bytes == sum(len(d.encode("utf-8")) for d in val_docs)
    result = evaluate_model(UniformLM(tok.vocab_size), tok, EvalConfig(prompts=[], max_val_tokens=None), ref)
    metrics = result["metrics"]
    assert result["stats"]["val"]["docs"] == len(val_docs)
    assert result["stats"]["val"]["decoded_bytes"] == metrics["val_bytes"] == ref.val_bytes
    assert metrics["val_tokens"] == ref.n_val_tokens - len(val_docs)  # every token but the separators is scored
    uniform_nats = metrics["val_tokens"] * math.log(tok.vocab_size)
    assert metrics["val_bpb"] == pytest.approx(uniform_nats / (math.log(2) * ref.val_bytes))
