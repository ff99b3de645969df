"""Kill a training run with SIGKILL between two checkpoints and compare what its resume ends with against an
uninterrupted run: the machinery of every training method's SIGKILL-and-resume test (pretraining, SFT, DPO and the
classification head all run on the kernel `tasks.train.loop.TrainLoop`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import BaseModel
from safetensors.torch import load_file

from models.weights.checkpoint import STATE, WEIGHTS, step_dirs

REPO = Path(__file__).resolve().parents[1]

SLOW_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
import tasks.train.loop
{imports}
step = tasks.train.loop.TrainLoop.step
def slow(self):  # slow each step down so the test can kill the run between checkpoints
    time.sleep({delay!r})
    return step(self)
tasks.train.loop.TrainLoop.step = slow
{call}
"""


def kill_after(run: Callable[..., Any], args: list[BaseModel], out: Path, checkpoint: str, delay: float = 0.15,
               steps_dir: Path | None = None) -> list[str]:
    """Call `run(*args, out)` in a fresh process (every arg rebuilt from its JSON), each training step slowed by
    `delay` s, and SIGKILL it once `checkpoint` (a `step_…` name) is complete in `steps_dir` (default `out`); returns
    the complete checkpoints it left there."""
    steps_dir = steps_dir or out
    imports = {f"from {type(a).__module__} import {type(a).__name__}" for a in args}
    imports.add(f"from {run.__module__} import {run.__name__}")
    rebuilt = [f"{type(a).__name__}.model_validate_json({a.model_dump_json()!r})" for a in args]
    script = SLOW_RUN.format(tests=str(REPO / "tests"), imports="\n".join(sorted(imports)), delay=delay,
                             call=f"{run.__name__}({', '.join(rebuilt)}, Path({str(out)!r}))")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.time() + 120
    while not (steps_dir / checkpoint / "sidecar.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return [p.name for p in step_dirs(steps_dir)]


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """`a` and `b` hold the same values: tensors bit for bit (`torch.equal`), containers element by element."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, sorted(a), sorted(b))
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), (where, a, b)  # NaN equals NaN here


def assert_same_checkpoint(straight: Path, resumed: Path) -> None:
    """Two checkpoint directories hold the same weights and the same optimizer state, bit for bit (the state's clock
    aside: a killed run's seconds are its own)."""
    a, b = load_file(str(straight / WEIGHTS)), load_file(str(resumed / WEIGHTS))
    assert_same(a, b, WEIGHTS)
    state_a, state_b = (torch.load(d / STATE, weights_only=True) for d in (straight, resumed))
    assert state_a["optimizer"] and all(opt["state"] for opt in state_a["optimizer"])  # real moments to compare
    for state in (state_a, state_b):
        state.pop("train_seconds")
    assert_same(state_a, state_b, STATE)


def assert_stopped_before_saving(err: BaseException, out: Path) -> None:
    """A run stopped by the NaN/inf guard saved no checkpoint from its bad step on, left nothing half-written and no
    manifest, and every checkpoint it kept holds finite weights."""
    import re

    found = re.search(r"NaN/inf at step (\d+)\b.*last good checkpoint is (\S+):", str(err))
    assert found, str(err)
    bad, saved = int(found.group(1)), step_dirs(out)
    assert all(int(p.name.split("_")[1]) < bad for p in saved)
    assert found.group(2) == (str(saved[-1]) if saved else "none")
    assert not list(out.glob(".tmp-*")) and not (out / "manifest.json").exists()
    for checkpoint in saved:
        assert all(torch.isfinite(t).all() for t in load_file(str(checkpoint / WEIGHTS)).values())
