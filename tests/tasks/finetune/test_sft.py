"""SFT: loss only on assistant tokens, packing, fine-tuning from a checkpoint, resolving the base model."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_fixtures import checkpoint_ref, tiny_gpt, tiny_tokenizer, write_checkpoint
from resume_fixtures import assert_same_checkpoint, assert_stopped_before_saving, kill_after

from models.optimisation.lora import LoraConfig
from models.text.chat import encode_chat
from tasks.core.artifacts import finish_stage
from tasks.core.tracking import TrackingConfig
from tasks.finetune.sft import SFTConfig, pack, resolve_base, run_sft
from tasks.finetune.sft_data import TRAIN, VAL, ConversationSet

CONVERSATIONS = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is Debian?"},
     {"role": "assistant", "content": "A free operating system."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
     {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}],
    [{"role": "user", "content": "Name a language."}, {"role": "assistant", "content": "Python."}],
]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_only_assistant_tokens_are_targets(tokenizer):
    x, y, stats = pack(tokenizer, CONVERSATIONS, seq_len=128)
    assert stats["rows"] == 1 and stats["conversations"] == 3  # all three fit one row: packed
    end = tokenizer.token_to_id("<|end|>")
    targets = [int(t) for t in y[0] if t >= 0]
    # the targets are exactly the assistant replies, each closed by <|end|>, in packing order
    replies = tokenizer.decode(targets).split("<|end|>")[:-1]
    assert sorted(replies) == sorted(["A free operating system.", "Hello.", "Goodbye.", "Python."])
    assert targets.count(end) == 4
    # every non-target position is a system/user/role/bos token or padding
    expected = []
    for messages in sorted(CONVERSATIONS, key=lambda m: -len(encode_chat(tokenizer, m, False)[0])):
        ids, mask = encode_chat(tokenizer, messages, add_generation_prompt=False)
        expected += [t if m else -1 for t, m in zip(ids, mask)]
    assert y[0, : len(expected) - 1].tolist() == expected[1:]
    assert (y[0, len(expected) - 1 :] == -1).all() and (x[0, len(expected) :] == tokenizer.pad_id).all()
    assert stats["assistant_tokens"] == len(targets)


def test_markup_quoted_in_conversations_is_trained_as_text(tokenizer):
    """A corpus answer quoting "<|end|>" or "<|bos|>" neither ends the turn nor splits the packed row."""
    quoted = [{"role": "user", "content": "What ends a turn? <|assistant|>"},
              {"role": "assistant", "content": "The <|end|> token; <|bos|> starts a document."}]
    x, y, stats = pack(tokenizer, [quoted, *CONVERSATIONS], seq_len=160)
    control = {tokenizer.token_to_id(t) for t in ("<|bos|>", "<|user|>", "<|assistant|>", "<|end|>")}
    row = [int(t) for t in x[0] if t != tokenizer.pad_id]
    assert row.count(tokenizer.bos_id) == stats["conversations"] == 4  # one separator per conversation
    targets = [int(t) for t in y[0] if t >= 0]
    assert [t for t in targets if t in control] == [tokenizer.token_to_id("<|end|>")] * 5  # the template's own
    assert "The <|end|> token; <|bos|> starts a document.<|end|>" in tokenizer.decode(targets)


def test_loss_ignores_non_assistant_tokens(tokenizer):
    model = tiny_gpt(tokenizer.vocab_size)
    x, y, _ = pack(tokenizer, CONVERSATIONS, seq_len=128)
    logits, _ = model(x)
    _, loss = model(x, y)
    keep = y >= 0
    manual = F.cross_entropy(logits[keep], y[keep])
    assert torch.allclose(loss, manual)
    # changing a user message's tokens changes no target, so the targets (what is trained on) stay identical
    changed = [[*CONVERSATIONS[0][:1], {"role": "user", "content": "What is Ubuntu?"}, CONVERSATIONS[0][2]]]
    _, y_changed, _ = pack(tokenizer, changed, seq_len=128)
    _, y_orig, _ = pack(tokenizer, CONVERSATIONS[:1], seq_len=128)
    assert sorted(t for t in y_changed[0].tolist() if t >= 0) == sorted(t for t in y_orig[0].tolist() if t >= 0)


def test_long_conversations_are_cut_and_untrainable_ones_dropped(tokenizer):
    long_user = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "Yes."}]
    x, y, stats = pack(tokenizer, [long_user, CONVERSATIONS[2]], seq_len=16)
    assert stats["truncated"] == 2 and stats["dropped_no_target"] == 1 and stats["rows"] == 1
    assert x.shape == (1, 16) and (y >= 0).any()


def conversation_set(root: Path, train, val) -> ConversationSet:
    root.mkdir(parents=True)
    for name, rows in ((TRAIN, train), (VAL, val)):
        (root / name).write_text("".join(json.dumps({"messages": m, "source": "test"}) + "\n" for m in rows))
    ref = ConversationSet(path=str(root), files=[TRAIN, VAL], n_train=len(train), n_val=len(val))
    return finish_stage(root, ref)


def test_sft_from_a_checkpoint_learns_the_answers(tokenizer, tmp_path: Path):
    from models.weights.checkpoint import load_model, read_sidecar

    model = tiny_gpt(tokenizer.vocab_size, seq_len=128)
    base_dir = write_checkpoint(tmp_path / "base", model, tokenizer)
    base = checkpoint_ref(base_dir, model)
    data = conversation_set(tmp_path / "data", CONVERSATIONS, CONVERSATIONS[:1])
    # lr 1e-2: the fixture is an untrained model (starting near ln V), memorising three answers in 60 steps
    cfg = SFTConfig(max_steps=60, batch_size=2, lr=1e-2, warmup_steps=5, eval_every=20, device="cpu", threads=1)
    ref = run_sft(cfg, base, data, tmp_path / "sft")

    stats = ref.manifest()["stats"]
    assert stats["val_loss"] < 0.5 * stats["val_loss_before"]  # the (memorised) answers got much likelier
    assert ref.step == 60 and ref.tokens_seen > 0 and ref.final_train_loss < 1.0
    tuned, tuned_tokenizer, sidecar = load_model(ref.dir / ref.checkpoint)
    assert tuned_tokenizer.sha256 == tokenizer.sha256
    assert sidecar["base_checkpoint"]["path"] == str(base_dir) and sidecar["sft"]["max_steps"] == 60
    assert not torch.equal(tuned.lm_head.weight, model.lm_head.weight)
    ids, _ = encode_chat(tokenizer, CONVERSATIONS[2][:1])
    out = tuned.generate(torch.tensor([ids]), 12, temperature=0.0)
    assert "<|end|>" in tokenizer.decode(out[0, len(ids) :].tolist())  # it learned to close its turn
    assert read_sidecar(base_dir)["step"] == 10  # the base checkpoint is untouched


def test_resolve_base_from_a_directory(tokenizer, tmp_path: Path):
    model = tiny_gpt(tokenizer.vocab_size)
    step_dir = write_checkpoint(tmp_path / "train", model, tokenizer)
    found = resolve_base(str(step_dir), TrackingConfig())
    assert found.checkpoint.dir / found.checkpoint.checkpoint == step_dir and found.tokens is None
    assert len(found.checkpoint.manifest_sha256) == 64
    finish_stage(tmp_path / "train", checkpoint_ref(step_dir, model))  # a finished train stage dir
    assert resolve_base(str(tmp_path / "train"), TrackingConfig()).checkpoint.checkpoint == step_dir.name
    with pytest.raises(FileNotFoundError, match="not a directory"):
        resolve_base(str(tmp_path / "missing"), TrackingConfig())
    with pytest.raises(ValueError, match="name a registry alias"):
        resolve_base("models:/lmforge", TrackingConfig())


def test_a_killed_run_resumes_to_the_same_weights(tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from safetensors.torch import load_file

    from models.weights import checkpoint as ckpt

    model = tiny_gpt(tokenizer.vocab_size, seq_len=128)
    base = checkpoint_ref(write_checkpoint(tmp_path / "base", model, tokenizer), model)
    data = conversation_set(tmp_path / "data", CONVERSATIONS, [])
    cfg = SFTConfig(max_steps=12, batch_size=2, checkpoint_every=6, device="cpu", threads=1)
    whole = run_sft(cfg, base, data, tmp_path / "whole")

    real_save = ckpt.save_checkpoint

    def save_then_die(out, step, *args, **kwargs):
        path = real_save(out, step, *args, **kwargs)
        if step == 6:
            raise KeyboardInterrupt("killed after the step-6 checkpoint")
        return path

    monkeypatch.setattr(ckpt, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_sft(cfg, base, data, tmp_path / "killed")
    monkeypatch.setattr(ckpt, "save_checkpoint", real_save)
    assert not (tmp_path / "killed" / "manifest.json").exists()
    resumed = run_sft(cfg, base, data, tmp_path / "killed")
    assert resumed.step == 12 and resumed.tokens_seen == whole.tokens_seen
    a = load_file(str(whole.dir / whole.checkpoint / ckpt.WEIGHTS))
    b = load_file(str(resumed.dir / resumed.checkpoint / ckpt.WEIGHTS))
    assert all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.slow
@pytest.mark.parametrize("lora", [None, LoraConfig(rank=4, alpha=8.0)], ids=["full", "lora"])
def test_sigkill_and_resume_equals_an_uninterrupted_run(tokenizer, tmp_path: Path, lora):
    model = tiny_gpt(tokenizer.vocab_size, seq_len=128)
    base = checkpoint_ref(write_checkpoint(tmp_path / "base", model, tokenizer), model)
    data = conversation_set(tmp_path / "data", CONVERSATIONS, CONVERSATIONS[:1])
    cfg = SFTConfig(max_steps=12, batch_size=2, checkpoint_every=4, eval_every=4, device="cpu", threads=1, lora=lora)
    whole = run_sft(cfg, base, data, tmp_path / "whole")
    out = tmp_path / "killed"
    done = kill_after(run_sft, [cfg, base, data], out, "step_000004")
    assert done and "step_000012" not in done and not (out / "manifest.json").exists(), done
    resumed = run_sft(cfg, base, data, out)
    assert resumed.step == 12 and resumed.tokens_seen == whole.tokens_seen
    assert resumed.final_train_loss == whole.final_train_loss
    assert_same_checkpoint(whole.dir / whole.checkpoint, resumed.dir / resumed.checkpoint)
    assert resumed.manifest()["stats"]["val_loss"] == whole.manifest()["stats"]["val_loss"]


def test_a_diverging_run_stops_before_saving_its_nan_step(tokenizer, tmp_path: Path):
    # fp16 autocast and an absurd lr: the logits overflow to inf within a few steps, for real
    model = tiny_gpt(tokenizer.vocab_size, seq_len=128)
    base = checkpoint_ref(write_checkpoint(tmp_path / "base", model, tokenizer), model)
    data = conversation_set(tmp_path / "data", CONVERSATIONS, [])
    cfg = SFTConfig(max_steps=30, batch_size=2, checkpoint_every=1, lr=1000.0, warmup_steps=0, grad_clip=0,
                    dtype="float16", device="cpu", threads=1)
    with pytest.raises(FloatingPointError, match=r"sft loss became NaN/inf at step \d+") as err:
        run_sft(cfg, base, data, tmp_path / "sft")
    assert_stopped_before_saving(err.value, tmp_path / "sft")
