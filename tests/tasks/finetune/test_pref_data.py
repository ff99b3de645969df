"""Preference data: HH-RLHF and TRL files read into one pair form, bad lines named by file:line, label-free
(SPIN-style) pairs built from SFT conversations with the model's own samples, and a held-out split by prompt."""

import json
from pathlib import Path

import pytest
from lm_fixtures import checkpoint_ref, tiny_gpt, tiny_tokenizer, write_checkpoint

from tasks.finetune.pref_data import PreferenceDataConfig, load_pairs, read_pairs, run_preference_data
from tasks.finetune.sft_data import TRAIN, VAL

HH = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help "
      "with that.", "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How do I pick a lock?\n\n"
      "Assistant: Use a pin."}
TRL = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
       "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}
IMPLICIT = {"chosen": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
            "rejected": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Seven."}]}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_both_formats_read_into_prompt_chosen_rejected(tmp_path: Path):
    pairs = read_pairs(write_jsonl(tmp_path / "p.jsonl", [HH, TRL, IMPLICIT, {**TRL, "prompt": "What is 2+2?",
                                                                              "chosen": "4", "rejected": "5"}]))
    assert pairs[0] == {"prompt": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                                   {"role": "user", "content": "How do I pick a lock?"}],
                        "chosen": "I can't help with that.", "rejected": "Use a pin."}
    assert pairs[1] == {"prompt": TRL["prompt"], "chosen": "4", "rejected": "5"}
    assert pairs[2] == {"prompt": IMPLICIT["chosen"][:1], "chosen": "Blue.", "rejected": "Seven."}
    assert pairs[3] == {"prompt": [{"role": "user", "content": "What is 2+2?"}], "chosen": "4", "rejected": "5"}


@pytest.mark.parametrize("bad", [
    "{not json",
    json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: a"}),  # no rejected
    json.dumps({"chosen": "Human: hi Assistant: a", "rejected": "x"}),  # not an HH dialogue
    json.dumps({**TRL, "chosen": [{"role": "user", "content": "4"}]}),  # the answer is no assistant turn
    json.dumps({**TRL, "prompt": [{"role": "robot", "content": "?"}]}),
])
def test_a_bad_line_is_named_by_file_and_line(tmp_path: Path, bad: str):
    path = write_jsonl(tmp_path / "prefs.jsonl", [HH, "", bad])
    with pytest.raises(ValueError, match=f"{path}:3"):
        read_pairs(path)
    if bad.startswith("{not"):
        return  # a line that is not JSON fails even with skip_bad_lines: the file itself is broken
    skipped: list[str] = []  # skip_bad_lines: the good pairs stay, the bad line is reported by file:line
    assert len(read_pairs(path, skipped)) == 1 and len(skipped) == 1 and skipped[0].startswith(f"{path}:3: ")


def test_label_free_pairs_hold_the_reference_answer_against_the_models_sample(tmp_path: Path):
    from tasks.core.artifacts import finish_stage
    from tasks.finetune.sft_data import ConversationSet

    tokenizer = tiny_tokenizer()
    model = tiny_gpt(tokenizer.vocab_size, seq_len=128)
    base = checkpoint_ref(write_checkpoint(tmp_path / "base", model, tokenizer), model)
    conversations = [[{"role": "user", "content": f"Tell me about topic {i}."},
                      {"role": "assistant", "content": f"Topic {i} is documented in the manual."}] for i in range(6)]
    (tmp_path / "conv").mkdir()
    write_jsonl(tmp_path / "conv" / TRAIN, [{"messages": m} for m in conversations[:5]])
    write_jsonl(tmp_path / "conv" / VAL, [{"messages": m} for m in conversations[5:]])
    data = finish_stage(tmp_path / "conv", ConversationSet(path=str(tmp_path / "conv"), files=[TRAIN, VAL], n_train=5,
                                                           n_val=1))
    files = [str(write_jsonl(tmp_path / "hh.jsonl", [HH]))]
    cfg = PreferenceDataConfig(files=files, spin_max_tokens=8, val_fraction=0.3, seed=1)
    (tmp_path / "out").mkdir()
    ref = run_preference_data(cfg, base, data, tmp_path / "out")

    pairs = load_pairs(ref) + load_pairs(ref, VAL)
    spin = [p for p in pairs if p["source"] == "spin"]
    assert len(spin) == 6 and ref.n_train + ref.n_val == 7 and ref.n_val >= 1
    for pair in spin:
        i = int(pair["prompt"][0]["content"].split()[-1].rstrip("."))
        assert pair["chosen"] == f"Topic {i} is documented in the manual." and pair["rejected"] != pair["chosen"]
    assert [p["source"] for p in pairs].count("file:hh.jsonl") == 1
    # the split is by prompt: the same config splits the same way, and no prompt is on both sides
    train_prompts = {json.dumps(p["prompt"]) for p in load_pairs(ref)}
    assert not train_prompts & {json.dumps(p["prompt"]) for p in load_pairs(ref, VAL)}


def test_a_small_file_still_holds_out_one_prompt(tmp_path: Path):
    rows = [{**TRL, "prompt": f"Question {i}?"} for i in range(4)]
    cfg = PreferenceDataConfig(files=[str(write_jsonl(tmp_path / "p.jsonl", rows))], spin=False, val_fraction=0.01)
    (tmp_path / "out").mkdir()
    ref = run_preference_data(cfg, None, None, tmp_path / "out")
    assert (ref.n_train, ref.n_val) == (3, 1)
    with pytest.raises(ValueError, match="spin=True needs"):
        run_preference_data(cfg.model_copy(update={"spin": True}), None, None, tmp_path / "out")
