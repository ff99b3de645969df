"""DPO stage: the completion is what follows the prompt in the chat template, the reference scores chance on its own
pairs, and training on pairs (full and LoRA) makes held-out chosen answers win while the model moves from its
reference."""

import json
from pathlib import Path

import pytest
import torch
from lm_fixtures import checkpoint_ref, tiny_gpt, tiny_tokenizer, write_checkpoint
from resume_fixtures import assert_same_checkpoint, assert_stopped_before_saving, kill_after

from models.optimisation.lora import LoraConfig
from models.text.chat import encode_chat
from tasks.core.artifacts import finish_stage
from tasks.finetune.dpo import DPOConfig, encode_pair, run_dpo
from tasks.finetune.pref_data import PreferenceSet
from tasks.finetune.pref_eval import preference_metrics
from tasks.finetune.sft_data import TRAIN, VAL

# Chosen answers are short English; rejected ones repeat a word: a preference that generalises to new prompts.
TOPICS = ["Debian", "Python", "JSON", "the fox", "a model card", "volunteers", "the library", "files", "the dog",
          "the world"]


def pair(i: int, topic: str) -> dict:
    return {"prompt": [{"role": "user", "content": f"Tell me about {topic}."}],
            "chosen": f"{topic} is described in the manual.", "rejected": "dog " * (3 + i % 4)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    tokenizer = tiny_tokenizer()
    model = tiny_gpt(tokenizer.vocab_size, seq_len=64)
    base = checkpoint_ref(write_checkpoint(tmp / "base", model, tokenizer), model)
    (tmp / "pairs").mkdir()
    train, val = [pair(i, t) for i, t in enumerate(TOPICS[:7])], [pair(i, t) for i, t in enumerate(TOPICS[7:])]
    for name, rows in ((TRAIN, train), (VAL, val)):
        (tmp / "pairs" / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = finish_stage(tmp / "pairs", PreferenceSet(path=str(tmp / "pairs"), files=[TRAIN, VAL], n_train=7, n_val=3))
    return tmp, tokenizer, model, base, data, val


def test_the_completion_is_what_follows_the_prompt(setup):
    _, tokenizer, _, _, _, val = setup
    prompt, chosen, rejected = encode_pair(tokenizer, val[0], 64, 63)
    assert prompt == encode_chat(tokenizer, val[0]["prompt"], add_generation_prompt=True)[0]
    full = encode_chat(tokenizer, [*val[0]["prompt"], {"role": "assistant", "content": val[0]["chosen"]}], False)[0]
    assert prompt + chosen == full and tokenizer.decode(chosen) == val[0]["chosen"] + "<|end|>"
    assert rejected[-1] == tokenizer.chat_template.end_of_turn_id
    short_prompt, short_chosen, _ = encode_pair(tokenizer, val[0], 12, 4)  # the prompt's end, the answer's start
    assert short_prompt == prompt[-4:] and short_chosen == chosen[:8]


@pytest.mark.parametrize("lora", [None, LoraConfig(rank=4, alpha=8.0)])
def test_dpo_makes_held_out_chosen_answers_win(setup, lora):
    from models.weights.checkpoint import load_model

    tmp, tokenizer, model, base, data, val = setup
    before = preference_metrics(model, model, tokenizer, val, beta=0.5, max_len=64, max_prompt_len=32)
    assert before["pref_reward_acc"] == 0.5 and before["pref_margin"] == 0.0 and before["pref_kl"] == 0.0

    cfg = DPOConfig(beta=0.5, max_steps=12, batch_size=4, lr=3e-3 if lora is None else 1e-2, warmup_steps=0,
                    device="cpu", threads=1, lora=lora)
    ref = run_dpo(cfg, base, data, tmp / f"dpo-{lora is not None}")
    tuned, _, sidecar = load_model(ref.dir / ref.checkpoint)
    after = preference_metrics(tuned, model, tokenizer, val, beta=0.5, max_len=64, max_prompt_len=32)
    assert after["pref_reward_acc"] == 1.0 and after["pref_margin"] > 0.5 and after["pref_kl"] > 0
    assert ref.manifest()["stats"]["train_reward_acc"] == 1.0
    assert sidecar["base_checkpoint"]["path"] == str(base.dir / base.checkpoint) and sidecar["dpo"]["beta"] == 0.5
    assert not torch.equal(tuned.lm_head.weight, model.lm_head.weight) or lora is not None
    assert set(tuned.state_dict()) == set(model.state_dict())  # LoRA: a plain (merged) checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("lora", [None, LoraConfig(rank=4, alpha=8.0)], ids=["full", "lora"])
def test_sigkill_and_resume_equals_an_uninterrupted_run(setup, tmp_path, lora):
    _, _, _, base, data, _ = setup
    cfg = DPOConfig(beta=0.5, max_steps=12, batch_size=4, lr=3e-3, warmup_steps=2, checkpoint_every=4, device="cpu",
                    threads=1, lora=lora)
    whole = run_dpo(cfg, base, data, tmp_path / "whole")
    out = tmp_path / "killed"
    done = kill_after(run_dpo, [cfg, base, data], out, "step_000004")
    assert done and "step_000012" not in done and not (out / "manifest.json").exists(), done
    resumed = run_dpo(cfg, base, data, out)  # its reference comes from the base, not from its resumed weights
    assert resumed.step == 12 and resumed.tokens_seen == whole.tokens_seen
    assert resumed.final_train_loss == whole.final_train_loss
    assert_same_checkpoint(whole.dir / whole.checkpoint, resumed.dir / resumed.checkpoint)


def test_a_diverging_run_stops_before_saving_its_nan_step(setup, tmp_path):
    _, _, _, base, data, _ = setup  # fp16 autocast and an absurd lr: the log-probs overflow, for real
    cfg = DPOConfig(max_steps=30, batch_size=4, lr=1000.0, warmup_steps=0, grad_clip=0, checkpoint_every=1,
                    dtype="float16", device="cpu", threads=1)
    with pytest.raises(FloatingPointError, match=r"dpo loss became NaN/inf at step \d+") as err:
        run_dpo(cfg, base, data, tmp_path / "dpo")
    assert_stopped_before_saving(err.value, tmp_path / "dpo")
