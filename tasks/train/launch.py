"""Several training processes from one Prefect task: `torchrun` on this machine, and rank 0's result back.

The train task calls `launch` when `train.nproc_per_node` asks for more than one process (by default one per visible
GPU), so the same deployment trains on 1 or 8 GPUs. It is the one place a task starts processes, by design: DDP and
FSDP need one process per device. The config, token set and tracking handle travel as JSON files next to the
checkpoints; the ranks write the usual stage directory, and the manifest rank 0 writes last is the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tasks.core.artifacts import CheckpointRef, TokenSet, load_done

REPO = Path(__file__).resolve().parents[2]
LOG = "torchrun.log"


def processes(nproc_per_node: int, device: str) -> int:
    """How many processes to train with: the configured number, or (0) one per visible GPU, 1 on CPU."""
    if nproc_per_node:
        return nproc_per_node
    if device.startswith(("cpu", "cuda:")) or os.environ.get("WORLD_SIZE"):  # one named device, or already a rank
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def launch(cfg, tokens: TokenSet, out: Path, tracking, nproc: int) -> CheckpointRef:
    """Run `python -m torch.distributed.run --standalone --nproc_per_node N -m tasks.train ...` and return the
    CheckpointRef rank 0 recorded; a failed launch raises with the tail of its log."""
    launch_dir = out / "launch"
    launch_dir.mkdir(parents=True, exist_ok=True)
    (launch_dir / "train.json").write_text(cfg.model_dump_json())
    (launch_dir / "tokens.json").write_text(tokens.model_dump_json())
    args = ["--config", launch_dir / "train.json", "--tokens", launch_dir / "tokens.json", "--out", out]
    if tracking is not None:
        tracking_cfg, run_id = tracking
        handle = {"config": tracking_cfg.model_dump(mode="json"), "run_id": run_id}
        (launch_dir / "tracking.json").write_text(json.dumps(handle))
        args += ["--tracking", launch_dir / "tracking.json"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command += ["-m", "tasks.train", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(launch_dir / LOG, "w") as log:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    ref = load_done(out, CheckpointRef)
    if done.returncode != 0 or ref is None:
        tail = (launch_dir / LOG).read_text()[-3000:]
        raise RuntimeError(
            f"torchrun with {nproc} training processes failed (exit {done.returncode}); "
            f"full log: {launch_dir / LOG}\n{tail}"
        )
    return ref
