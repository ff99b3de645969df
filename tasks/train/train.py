"""Train stage: pretrain a model on the token shards, checkpointing as it goes and resuming exactly after a kill.

`run_train` trains in this process (CPU or one GPU) or, when launched by `torchrun` (`python -m tasks.train`; the
Prefect task launches it itself for `nproc_per_node` > 1), as one rank of DDP/FSDP2. Checkpoints
(`models.weights.checkpoint`) hold weights, optimizer state (sharded through DCP under FSDP), RNG states and the loader
position, so a run killed with SIGKILL and restarted on the same `out` continues from the last checkpoint and, on CPU,
ends bit-identical to an uninterrupted run (unless `max_seconds` is set: a time budget depends on the clock). The
Prefect task's retry relies on this. Under several ranks, gradients are reduced once per optimizer step and rank 0's
clock drives the schedule and the time budget. A NaN/inf loss stops the run before anything is saved from it. Logs loss,
lr, grad norm, tokens/s, MFU and peak memory to MLflow in batches. The loop is the training kernel (`loop.TrainLoop`);
what pretraining supplies to it is `state.TrainRun`; the config is `config.py`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prefect import task

from tasks.core.artifacts import CheckpointRef, TokenSet, load_done, stage_dir
from tasks.train.config import TrainConfig, lr_multiplier
from tasks.train.helpers import Tracking

__all__ = ["TrainConfig", "lr_multiplier", "run_train", "train", "main"]  # TrainConfig's home is tasks.train.config


def run_train(cfg: TrainConfig, tokens: TokenSet, out: Path, tracking: Tracking = None) -> CheckpointRef:
    """Train (or resume the run in `out`) to `max_steps` / `max_seconds`; evaluates and checkpoints on the way."""
    from tasks.train.state import TrainRun

    run = TrainRun(cfg, tokens, out, tracking)  # the run's state, restored from out's latest checkpoint if any
    try:
        run.fit()
    finally:
        run.close()
    return run.finish(entry=run_train)


@task(name="train", retries=1)
def train(cfg: TrainConfig, tokens: TokenSet, tracking: Tracking = None) -> CheckpointRef:
    """Train in this process, or with `torchrun` on `train.nproc_per_node` processes (default: every visible GPU)."""
    from tasks.train.launch import launch, processes

    out = stage_dir("train", cfg, tokens, entry=run_train)
    done = load_done(out, CheckpointRef)
    if done:
        return done
    nproc = processes(cfg.nproc_per_node, cfg.device)
    return launch(cfg, tokens, out, tracking, nproc) if nproc > 1 else run_train(cfg, tokens, out, tracking)


def main() -> None:
    """`torchrun --nproc_per_node N -m tasks.train --config train.json --tokens tokens.json --out DIR`."""
    from models.distributed.process_group import destroy_distributed
    from tasks.core.tracking import TrackingConfig

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", type=Path, required=True, help="TrainConfig as JSON")
    parser.add_argument("--tokens", type=Path, required=True, help="TokenSet as JSON (the tokenize stage's ref)")
    parser.add_argument("--out", type=Path, required=True, help="stage directory for checkpoints and manifest")
    parser.add_argument("--tracking", type=Path, help='MLflow as JSON: {"config": TrackingConfig, "run_id": ...}')
    args = parser.parse_args()
    cfg = TrainConfig.model_validate_json(args.config.read_text())
    tracking = None
    if args.tracking:
        raw = json.loads(args.tracking.read_text())
        tracking = (TrackingConfig.model_validate(raw["config"]), raw["run_id"])
    try:
        ref = run_train(cfg, TokenSet.model_validate_json(args.tokens.read_text()), args.out, tracking)
    finally:
        destroy_distributed()
    print(json.dumps(ref.model_dump(mode="json")))


if __name__ == "__main__":
    main()
