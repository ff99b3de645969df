"""Continued pretraining: a new corpus encoded with an existing tokenizer (the champion's), not a retrained one."""

from pathlib import Path

from token_fixtures import synthetic_docs, write_shards

from models.text.tokenizer import Tokenizer
from tasks.core.tokens import read_bin
from tasks.tokenize.tokenize import TokenizeConfig, run_tokenize


def test_existing_tokenizer_is_reused_and_a_single_new_document_trains(tmp_path: Path):
    first = run_tokenize(
        TokenizeConfig(vocab_size=300, val_fraction=0.2, workers=1, min_bytes_per_token=0.0),
        write_shards(tmp_path / "old", [synthetic_docs(40)]),
        tmp_path / "tok-old",
    )
    champion_tokenizer = first.dir / first.tokenizer_file
    new_docs = write_shards(tmp_path / "new", [synthetic_docs(1, seed=9)])
    cfg = TokenizeConfig(vocab_size=999, val_fraction=0.2, workers=1, min_bytes_per_token=0.0,
                         tokenizer_file=str(champion_tokenizer))
    second = run_tokenize(cfg, new_docs, tmp_path / "tok-new")
    assert (second.dir / second.tokenizer_file).read_bytes() == champion_tokenizer.read_bytes()
    assert second.vocab_size == first.vocab_size != 999
    assert second.train_files and second.n_train_tokens > 0  # one new document is still trained on
    tokenizer = Tokenizer.load(champion_tokenizer)
    tokens = read_bin(second.dir / second.train_files[0]).tolist()
    assert tokenizer.decode(tokens[1:]) == synthetic_docs(1, seed=9)[0]
