"""Two gloo ranks on CPU under real `torchrun`: one clock under DDP, DDP/FSDP with gradient accumulation equal to one
process, FSDP SIGKILL-and-resume equal to an uninterrupted run, and the pipeline's train task launching torchrun."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from token_fixtures import tiny_train_config

from models.weights.checkpoint import step_dirs
from tasks.train.train import TrainConfig, run_train

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow  # every test here starts torchrun (two ranks importing torch): seconds each

# Scripts run by torchrun in place of `-m tasks.train`: the real entry point, with the loader slowed down (so a test
# can kill between checkpoints, or make one rank's clock run ahead) and the schedule's inputs recorded per rank.
PRELUDE = """
import json, os, sys, time
sys.argv = [sys.argv[0], *{args!r}]
import tasks.core.tokens
import tasks.train.schedule as schedule
import tasks.train.train as train
rank = int(os.environ["RANK"])
next_window = tasks.core.tokens.TokenLoader.next_window
def slowed(self):
    time.sleep({delay!r} * (1 + rank))  # rank 1 reads slower: its own clock would run ahead of rank 0's
    return next_window(self)
tasks.core.tokens.TokenLoader.next_window = slowed
multiplier = schedule.Schedule.multiplier  # what the training kernel's step calls
def recorded(self, step, elapsed=0.0):
    mult = multiplier(self, step, elapsed)
    with open(os.path.join({out!r}, f"schedule-rank{{rank}}.jsonl"), "a") as f:
        f.write(json.dumps([step, elapsed, mult]) + "\\n")
    return mult
schedule.Schedule.multiplier = recorded
train.main()
"""


def small(**overrides) -> TrainConfig:
    base = dict(max_steps=8, batch_size=2, checkpoint_every=0, eval_every=0)
    return tiny_train_config(**{**base, **overrides})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(cfg: TrainConfig, tokens, out: Path, delay: float | None = None, wait: bool = True):
    """Two ranks of `tasks.train` (or of PRELUDE, with `delay` seconds per batch) under torchrun."""
    out.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{out.name}-cfg.json").write_text(cfg.model_dump_json())
    (out.parent / f"{out.name}-tokens.json").write_text(tokens.model_dump_json())
    args = ["--config", f"{out}-cfg.json", "--tokens", f"{out}-tokens.json", "--out", str(out)]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    if delay is None:
        command = [*launch, "-m", "tasks.train", *args]
    else:
        script = out.parent / f"{out.name}-run.py"
        script.write_text(PRELUDE.format(args=args, delay=delay, out=str(out)))
        command = [*launch, str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if not wait:
        return subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "manifest.json").read_text())


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (Linux), collected before anything is killed."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            found += [child, *descendants(child)]
    return found


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def test_ddp_time_budget_one_clock_same_lr_and_last_step_on_every_rank(tokens, tmp_path):
    cfg = small(max_steps=10_000, max_seconds=2.0, warmup_steps=5, distributed="ddp")
    manifest = torchrun(cfg, tokens, tmp_path / "ddp", delay=0.01)
    ranks = [(tmp_path / "ddp" / f"schedule-rank{r}.jsonl").read_text().splitlines() for r in (0, 1)]
    assert ranks[0] == ranks[1]  # same (step, elapsed, lr multiplier) at every step: rank 0's clock
    steps = manifest["stats"]["steps"]
    assert 2 <= steps < cfg.max_steps and len(ranks[0]) == steps  # stopped by the budget, at the same step
    assert json.loads(ranks[0][-1])[1] < cfg.max_seconds <= manifest["stats"]["train_seconds"]


@pytest.fixture(scope="module")
def one_process(tokens, tmp_path_factory):
    """The reference of the accumulation tests, trained once: one process, 2 micro-batches of 4 rows per step."""
    one = small(max_steps=3, batch_size=4, tokens_per_step=256, warmup_steps=0)
    return one, run_train(one, tokens, tmp_path_factory.mktemp("one"))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])  # compile wraps DDP / the FSDP model
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_with_accumulation_equal_one_process(tokens, one_process, tmp_path, strategy, compiled):
    # two ranks: 2 micro-batches of 2 rows each: the same tokens as the one-process reference's 4-row micro-batches
    one, single = one_process
    two = one.model_copy(update={"batch_size": 2, "distributed": strategy, "compile": compiled})
    manifest = torchrun(two, tokens, tmp_path / "two")
    assert manifest["stats"]["world_size"] == 2 and manifest["stats"]["grad_accum"] == 2
    assert manifest["ref"]["tokens_seen"] == single.tokens_seen == 3 * 256
    a, b = weights(single.dir / single.checkpoint), weights(tmp_path / "two" / "step_000003")
    assert a.keys() == b.keys()
    # tolerance: fp32, only the summation order differs (all-reduce / reduce-scatter vs one batch)
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)
    assert manifest["stats"]["final_train_loss"] == pytest.approx(single.final_train_loss, rel=1e-5)


def test_fsdp_sigkill_and_resume_equals_an_uninterrupted_run(tokens, tmp_path):
    cfg = small(max_steps=8, checkpoint_every=3, distributed="fsdp", tokens_per_step=256)
    straight = torchrun(cfg, tokens, tmp_path / "straight")
    out = tmp_path / "killed"
    proc = torchrun(cfg, tokens, out, delay=0.2, wait=False)
    deadline = time.time() + 180
    while not (out / "step_000003").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    for pid in [proc.pid, *descendants(proc.pid)]:  # torchrun and both ranks (they run in sessions of their own)
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    done = [p.name for p in step_dirs(out)]
    assert done and "step_000008" not in done and not (out / "manifest.json").exists(), done
    assert (out / done[-1] / "sharded" / ".metadata").is_file()  # DCP's sharded model + optimizer state
    resumed = torchrun(cfg, tokens, out)
    assert resumed["stats"]["resumed_from_step"] in (3, 6)
    a, b = weights(tmp_path / "straight" / "step_000008"), weights(out / "step_000008")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # exact: same order of operations
    assert resumed["stats"]["final_train_loss"] == straight["stats"]["final_train_loss"]


def test_train_task_launches_torchrun_and_records_world_size(tokens, lmforge_home, tmp_path):
    from tasks.core.tracking import TrackingConfig, client, open_run
    from tasks.train.train import train

    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = open_run(tracking, "train-2-ranks", params={}, tags={})
    cfg = small(max_steps=4, nproc_per_node=2, device="cpu")
    ref = train.fn(cfg, tokens, (tracking, run_id))
    assert ref.step == 4 and Path(ref.path).is_relative_to(lmforge_home)
    assert ref.manifest()["stats"]["world_size"] == 2 and ref.tokens_seen == 4 * 2 * 2 * 32
    assert (Path(ref.path) / "launch" / "torchrun.log").is_file()
    run = client(tracking).get_run(run_id)
    assert run.data.tags["train.world_size"] == "2"
    assert [m.step for m in client(tracking).get_metric_history(run_id, "train/loss")] == [2, 4]
    assert train.fn(cfg, tokens, (tracking, run_id)) == ref  # done: the second call only reads the manifest
