"""Running datatrove pipelines from a stage: executor choice (local, Ray, Slurm), errors that surface, merged stats.

`run_pipeline(steps, name=..., tasks=..., workers=..., logging_dir=..., backend=...)` runs one datatrove pipeline to
completion and returns its stats merged over every rank, including ranks finished by an earlier, interrupted run
(datatrove skips ranks that have a completion marker in `logging_dir/completions/`, which is how a rerun resumes).

Backends:
- `local`: `LocalPipelineExecutor`, `workers` processes on this machine (forkserver; steps must be importable).
- `ray`: `RayPipelineExecutor` on the Ray cluster `ray.init()` finds (`RAY_ADDRESS`); `pip install ray` first. The
  logging and output directories must be on a filesystem every node sees.
- `slurm`: `SlurmPipelineExecutor` submits a job array (`partition`, `time` from the config; the venv of this
  process is activated on the nodes); this call then waits for the array by polling the completion markers.
"""

from __future__ import annotations

import json
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Literal

from datatrove.executor.local import LocalPipelineExecutor

Backend = Literal["local", "ray", "slurm"]


class SurfacingLocalExecutor(LocalPipelineExecutor):
    """LocalPipelineExecutor whose worker errors always reach the parent.

    An exception that cannot be pickled back from a pool worker (custom exceptions with required constructor
    arguments, C-extension errors) leaves `multiprocessing.Pool` waiting forever; re-raising every failure as a
    plain `RuntimeError` carrying the original traceback text makes it travel.
    """

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        try:
            return super()._run_for_rank(rank, local_rank, node_rank)
        except Exception as e:  # noqa: BLE001 - converted, never swallowed
            raise RuntimeError(f"rank {rank}: {type(e).__name__}: {e}\n{traceback.format_exc()}") from None


def run_pipeline(
    steps: list,
    *,
    name: str,
    tasks: int,
    workers: int,
    logging_dir: Path,
    backend: Backend = "local",
    slurm_partition: str = "",
    slurm_time: str = "04:00:00",
) -> list[dict[str, float]]:
    """Run `steps` over `tasks` ranks; return each step's stats (in step order) summed over all ranks."""
    logging_dir.mkdir(parents=True, exist_ok=True)
    if backend == "local":
        executor = SurfacingLocalExecutor(
            steps, tasks=tasks, workers=max(1, min(workers, tasks)), logging_dir=str(logging_dir)
        )
    elif backend == "ray":
        import os

        import ray
        from datatrove.executor.ray import RayPipelineExecutor

        if not ray.is_initialized():  # RAY_ADDRESS names a cluster; without it Ray starts a local one
            ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
        executor = RayPipelineExecutor(steps, tasks=tasks, workers=workers, logging_dir=str(logging_dir))
    elif backend == "slurm":
        from datatrove.executor.slurm import SlurmPipelineExecutor

        if not slurm_partition:
            raise ValueError("curate.executor='slurm' needs curate.slurm_partition (the sbatch --partition)")
        import sys

        executor = SlurmPipelineExecutor(
            steps, tasks=tasks, time=slurm_time, partition=slurm_partition, workers=workers,
            job_name=f"lmforge-{name}", logging_dir=str(logging_dir), venv_path=str(Path(sys.prefix) / "bin/activate"),
        )
    else:
        raise ValueError(f"unknown executor {backend!r}: use 'local', 'ray' or 'slurm'")
    try:
        executor.run()
    except Exception as e:
        raise RuntimeError(
            f"datatrove pipeline '{name}' failed; per-rank logs are in {logging_dir / 'logs'}. Cause: {e}"
        ) from e
    if backend == "slurm":
        while incomplete := executor.get_incomplete_ranks():
            time.sleep(30)  # the array runs on other nodes; its completion markers are the only signal
            if (logging_dir / "slurm_failed").exists():
                raise RuntimeError(f"slurm pipeline '{name}' failed with {len(incomplete)} ranks left: {logging_dir}")
    missing = [r for r in range(tasks) if not (logging_dir / "completions" / f"{r:05d}").exists()]
    if missing:
        raise RuntimeError(f"datatrove pipeline '{name}' left ranks {missing} unfinished; see {logging_dir}")
    return merged_stats(logging_dir)


def merged_stats(logging_dir: Path) -> list[dict[str, float]]:
    """Sum datatrove's per-rank `stats/NNNNN.json` into one `{stat: total}` per step, in step order (seconds)."""
    merged: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for path in sorted((logging_dir / "stats").glob("*.json")):
        for i, step in enumerate(json.loads(path.read_text())):
            out = merged[i]
            timing = step.get("time_stats") or {}
            out["seconds"] += float(timing.get("total", 0.0) if isinstance(timing, dict) else timing)
            for key, value in step.get("stats", {}).items():
                # counters are {"total": n}; doc-length style stats are {"total": sum, "n": ..., "mean": ...}
                out[key] += float(value.get("total", 0.0) if isinstance(value, dict) else value)
    return [dict(merged[i]) for i in sorted(merged)]
