"""SFT data: conversations derived from headings and prose, user files, PII and toxicity scrubbing, val split."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from token_fixtures import write_shards

from tasks.finetune.sft_data import (
    TRAIN,
    VAL,
    SFTDataConfig,
    derive_conversations,
    heading_topic,
    load_conversations,
    read_conversations,
    run_sft_data,
    sections,
)

DOC = """json — JSON encoder and decoder¶
Source code: Lib/json/__init__.py
JSON is a lightweight data interchange format inspired by JavaScript object literal syntax. It is easy to read.
>>> import json
>>> json.dumps([1, 2])
Basic Usage¶
Serialize obj as a JSON formatted stream to fp, a file-like object that supports write. The arguments
have the same meaning as in dumps and are passed on unchanged to the encoder.
Note
The json module always produces str objects, not bytes objects, whatever the input was given as.
Character Encodings
The RFC requires that JSON be represented using either UTF-8, UTF-16, or UTF-32, with UTF-8 being the default.
This line is long enough to be prose but it was wrapped in the middle of the
sentence and this is the tail.
"""


def test_headings_and_the_prose_under_them_become_answers():
    cfg = SFTDataConfig(min_answer_chars=40)
    found = dict(sections(DOC, cfg))
    assert set(found) == {"json — JSON encoder and decoder", "Basic Usage", "Character Encodings"}
    assert found["json — JSON encoder and decoder"].startswith("JSON is a lightweight")  # "Source code:" skipped
    assert found["Basic Usage"].endswith("passed on unchanged to the encoder.")  # wrapped lines joined
    assert "The json module always" not in found["Basic Usage"]  # stops at the admonition label
    assert heading_topic("Note", "previous sentence.") is None
    assert heading_topic("sentence and this is the tail of the", "This line is long but wrapped in the") is None
    assert heading_topic("1.2.3. Package configuration", "Done.") == "Package configuration"


def test_derivation_is_reproducible_and_uses_the_templates():
    cfg = SFTDataConfig(min_answer_chars=40, max_per_doc=3, follow_up_fraction=0.0, system_prompt_fraction=0.0)
    first = derive_conversations("doc-1", DOC, cfg)
    assert first == derive_conversations("doc-1", DOC, cfg)
    assert len(first) == 3
    for messages in first:
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["content"] in DOC.replace("\n", " ")
    always = cfg.model_copy(update={"follow_up_fraction": 1.0, "system_prompt_fraction": 1.0})
    multi = derive_conversations("doc-1", DOC, always)
    assert [m["role"] for m in multi[0]] == ["system", "user", "assistant", "user", "assistant"]


def test_stage_mixes_sources_scrubs_pii_drops_toxic_and_duplicates(tmp_path: Path):
    from tasks.curate.filters import bad_words

    shards = write_shards(tmp_path / "shards", [[DOC, "Just one line without any heading."]])
    toxic = " ".join(sorted(w for w in bad_words() if w.isalpha())[:6])
    user = [
        {"messages": [{"role": "user", "content": "Who do I mail?"},
                      {"role": "assistant", "content": "Write to jane.doe@example.org or call +44 20 7946 0958."}]},
        {"messages": [{"role": "user", "content": "Say something rude"}, {"role": "assistant", "content": toxic}]},
        {"messages": [{"role": "user", "content": "Only a question"}]},
    ]
    user.append(user[0])  # exact duplicate
    user_file = tmp_path / "mine.jsonl"
    user_file.write_text("".join(json.dumps(u) + "\n" for u in user))
    cfg = SFTDataConfig(files=[str(user_file)], min_answer_chars=40, val_fraction=0.2, follow_up_fraction=0.0)
    out = tmp_path / "out"
    out.mkdir()
    ref = run_sft_data(cfg, shards, out)

    stats = ref.manifest()["stats"]
    assert stats["sources"]["corpus"]["kept"] == 3
    assert stats["sources"]["file:mine.jsonl"] == {"in": 4, "kept": 1}
    assert stats["dropped_toxic"] == 1 and stats["dropped_no_assistant"] == 1 and stats["dropped_duplicate"] == 1
    assert stats["pii_email"] == 2 and stats["pii_phone"] == 2  # scrubbed before dedup: the duplicate counts too
    everything = load_conversations(ref, TRAIN) + load_conversations(ref, VAL)
    assert ref.n_train + ref.n_val == len(everything) == stats["sources"]["seed"]["kept"] + 4
    assert 0 < ref.n_val < ref.n_train
    text = json.dumps(everything)
    assert "jane.doe" not in text and "<EMAIL>" in text and "<PHONE>" in text
    sources = [json.loads(line)["source"] for line in (out / TRAIN).read_text().splitlines()]
    assert {"seed", "corpus"} <= set(sources)


def test_user_files_parquet_and_clear_errors(tmp_path: Path):
    messages = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]]
    pq.write_table(pa.table({"messages": messages}), tmp_path / "chat.parquet")
    assert read_conversations(tmp_path / "chat.parquet") == messages

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": messages[0]}) + "\n" + json.dumps({"messages": [{"role": "robot"}]}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl line 2: messages\[0\].role"):
        read_conversations(bad)
    with pytest.raises(ValueError, match="no SFT conversations left"):
        (tmp_path / "empty").mkdir()
        run_sft_data(SFTDataConfig(seed_set=False, derive_from_corpus=False), None, tmp_path / "empty")
