"""The trainer: learning, checkpoint sidecar and self-contained dirs, SIGKILL-and-resume bit identity, NaN stop.
Two-rank DDP/FSDP runs are in test_distributed.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from resume_fixtures import assert_same_checkpoint, kill_after
from safetensors.torch import load_file
from token_fixtures import TINY_MODEL, tiny_train_config

from models.architectures.registry import ModelConfig
from models.weights.checkpoint import load_model, step_dirs
from tasks.train.train import TrainConfig, lr_multiplier, run_train

TINY = ModelConfig(**TINY_MODEL)


def small(**overrides) -> TrainConfig:
    return tiny_train_config(**overrides)


def weights(ref_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ref_dir / "model.safetensors"))


def test_trains_and_writes_a_self_contained_checkpoint(tokens, tmp_path):
    ref = run_train(small(max_steps=30, keep_last=2, lr=1e-2), tokens, tmp_path / "run")
    stats = ref.manifest()["stats"]
    assert ref.step == 30 and ref.checkpoint == "step_000030"
    assert stats["val_loss"] < 0.75 * torch.log(torch.tensor(float(tokens.vocab_size))).item()  # learned something
    assert [p.name for p in step_dirs(ref.dir)] == ["step_000028", "step_000030"]  # keep_last=2
    ckpt = ref.dir / ref.checkpoint
    sidecar = json.loads((ckpt / "sidecar.json").read_text())
    assert sidecar["step"] == 30 and sidecar["tokens_seen"] == 30 * 4 * 32 == ref.tokens_seen
    assert sidecar["model"]["vocab_size"] == tokens.vocab_size and sidecar["train"]["max_steps"] == 30
    assert sidecar["data"]["manifest_sha256"] == tokens.manifest_sha256
    assert (
        sidecar["tokenizer"]["sha256"]
        == __import__("hashlib").sha256((ckpt / "tokenizer.json").read_bytes()).hexdigest()
    )
    assert sidecar["git_commit"] is None or len(sidecar["git_commit"]) >= 40
    assert Path(ref.tokenizer_file).is_file() and ref.tokenizer_file.startswith(str(ckpt))
    assert "lm_head.weight" not in weights(ckpt)  # tied: stored once, as model.embed_tokens.weight
    state = torch.load(ckpt / "state.pt", weights_only=True)  # no pickled code needed
    assert state["step"] == 30 and set(state["loader"]) == {"shard", "pos", "epoch", "index"}
    model, tok, side = load_model(ckpt)
    assert not model.training and side["step"] == 30 and tok.vocab_size == tokens.vocab_size
    x = torch.tensor([tok.encode("The river carries")])
    assert model.generate(x, 5, temperature=0).shape == (1, x.size(1) + 5)


def test_init_from_continues_from_weights(tokens, tmp_path):
    first = run_train(small(max_steps=8), tokens, tmp_path / "a")
    start = first.dir / first.checkpoint
    second = run_train(
        small(max_steps=2, init_from=str(start), lr=1e-9, warmup_steps=0, weight_decay=0), tokens, tmp_path / "b"
    )
    before, after = weights(start), weights(second.dir / second.checkpoint)
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # lr≈0: the weights came across


def test_schedules():
    cfg = small(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_multiplier(cfg, 0, 0) == pytest.approx(0.1) and lr_multiplier(cfg, 10, 0) == pytest.approx(1.0, abs=1e-3)
    assert lr_multiplier(cfg, 100, 0) == pytest.approx(0.1)
    wsd = cfg.model_copy(update={"schedule": "wsd", "decay_fraction": 0.2})
    assert lr_multiplier(wsd, 81, 0) == 1.0 and lr_multiplier(wsd, 91, 0) == pytest.approx(0.55)
    timed = cfg.model_copy(update={"max_seconds": 10.0})
    assert lr_multiplier(timed, 20, 10.0) == pytest.approx(0.1)  # out of time: fully decayed


def test_a_diverging_run_stops_at_the_nan_step_and_keeps_the_last_good_checkpoint(tokens, tmp_path):
    # fp16 autocast (with its gradient scaler) and an absurd lr: the loss overflows to NaN/inf at step 3, for real
    cfg = small(max_steps=12, checkpoint_every=2, dtype="float16", lr=1000.0, warmup_steps=6, grad_clip=0)
    with pytest.raises(FloatingPointError, match=r"NaN/inf at step 3\b.*last good checkpoint is .*step_000002"):
        run_train(cfg, tokens, tmp_path / "run")
    assert [p.name for p in step_dirs(tmp_path / "run")] == ["step_000002"]  # nothing saved from a NaN step on
    assert not list((tmp_path / "run").glob(".tmp-*")) and not (tmp_path / "run" / "manifest.json").exists()
    good = weights(tmp_path / "run" / "step_000002")
    assert all(torch.isfinite(t).all() for t in good.values())
    state = torch.load(tmp_path / "run" / "step_000002" / "state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0  # fp16's loss scale is checkpointed with the rest, for an exact resume
    logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert logged == [2]  # the curve up to the failure is kept; no row from the NaN step


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_sigkill_and_resume_is_bit_identical(tokens, tmp_path, optimizer):
    # the Muon run carries nanochat's whole recipe: NorMuon's second moments and the extras' own param groups resume too
    extras = {"value_embeds": True, "residual_scalars": True, "tie_embeddings": False} if optimizer == "muon" else {}
    recipe = {"muon_variant": "normuon", "scalar_lr": 0.5, "embed_lr": 0.05} if optimizer == "muon" else {}
    cfg = small(max_steps=12, checkpoint_every=4, optimizer=optimizer, **recipe,
                model=TINY.model_copy(update={"dropout": 0.1, **extras}))
    reference = run_train(cfg, tokens, tmp_path / "straight")
    out = tmp_path / "killed"
    done = kill_after(run_train, [cfg, tokens], out, "step_000004")
    assert done and "step_000012" not in done and not (out / "manifest.json").exists(), done
    resumed = run_train(cfg, tokens, out)
    assert resumed.manifest()["stats"]["resumed_from_step"] in (4, 8)
    a, b = weights(reference.dir / reference.checkpoint), weights(resumed.dir / resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.final_train_loss == reference.final_train_loss
    assert_same_checkpoint(reference.dir / reference.checkpoint, resumed.dir / resumed.checkpoint)  # + optimizer


@pytest.mark.slow  # importing MLflow alone takes ~10 s here
def test_metrics_reach_mlflow_in_batches(tokens, tmp_path):
    from tasks.core.tracking import TrackingConfig, client, open_run

    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = open_run(tracking, "train-test", params={}, tags={})
    run_train(small(max_steps=4, eval_every=2), tokens, tmp_path / "run", tracking=(tracking, run_id))
    history = client(tracking).get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == [2, 4]
    assert client(tracking).get_metric_history(run_id, "val/loss")
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["step"] == 2 and "train/tokens_per_s" in json.loads(lines[0])


def test_lora_continued_pretraining_saves_merged_weights_and_resumes_exactly(tokens, tmp_path):
    import shutil

    from models.optimisation.lora import LoraConfig

    base = run_train(small(max_steps=8), tokens, tmp_path / "base")
    start = str(base.dir / base.checkpoint)
    lora = small(max_steps=6, init_from=start, lora=LoraConfig(rank=4, alpha=8), lr=1e-2, checkpoint_every=3,
                 eval_every=0)
    whole = run_train(lora, tokens, tmp_path / "whole")
    final = weights(whole.dir / whole.checkpoint)
    assert not any("lora_" in k for k in final)  # a plain model: export, eval and serving load it as is
    changed = [k for k, v in weights(Path(start)).items() if not torch.equal(v, final[k])]
    assert changed and all(k.endswith("_proj.weight") for k in changed)  # only adapted projections moved
    sidecar = json.loads((whole.dir / whole.checkpoint / "sidecar.json").read_text())
    assert sidecar["trainable_params"] < sidecar["n_params"] == base.n_params == whole.n_params

    resumed = tmp_path / "resumed"  # a run killed after step 3 and started again
    resumed.mkdir()
    shutil.copytree(whole.dir / "step_000003", resumed / "step_000003")
    again = run_train(lora, tokens, resumed)
    assert again.manifest()["stats"]["resumed_from_step"] == 3
    assert all(torch.equal(final[k], v) for k, v in weights(again.dir / again.checkpoint).items())
