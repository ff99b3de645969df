"""One trained tiny pipeline run through the real CLI, shared by the README test and the UI test.

`run_tiny_demo(root)` runs the from-scratch demo command (`.venv/bin/lmforge run --preset tiny_cpu`; `make demo`
runs smol_cpu, which the README test runs on a tiny stand-in base) in a scratch working directory (`.venv` links to this interpreter's virtualenv) on a tiny synthetic site, with `SCALED_DOWN`
as the time budget; LMFORGE_HOME is the scratch dir's own, so the run has its own Prefect and MLflow stores.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tiny_corpus import write_site

# The tiny_cpu preset scaled down to a test budget (seconds of training on a ~40-page site).
SCALED_DOWN = [
    "crawl.local_site.port=0",
    "curate.tasks=1",
    "curate.workers=1",
    "tokenize.vocab_size=512",
    "train.model.n_layer=2",
    "train.model.n_embd=64",
    "train.model.n_head=2",
    "train.model.n_kv_head=2",
    "train.model.seq_len=64",
    "train.batch_size=8",
    "train.max_steps=60",
    "train.warmup_steps=5",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "train.progress=false",
    "evaluate.max_new_tokens=8",
]
# What the CLI runs add: live train lines and a val curve for the training-curve figure.
CLI_BUDGET = [*SCALED_DOWN, "train.progress=true", "train.eval_every=20"]


@dataclass
class DemoRun:
    cwd: Path  # the working directory: `.venv` link, the user files the README names
    home: Path  # LMFORGE_HOME
    site: Path  # the tiny site's HTML directory
    env: dict[str, str]
    stdout: str  # the demo command's stdout (what `make demo` shows)
    log_file: Path  # the run's library log

    def budget(self, keys: list[str] = CLI_BUDGET) -> str:
        return " ".join(f"--set {shlex.quote(key)}" for key in keys)

    def sh(self, command: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
        """Run a shell command line as a user would type it, in the demo's working directory."""
        return subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, **kwargs)


def demo_env(home: Path) -> dict[str, str]:
    """The environment of a user's shell: this session's Prefect server, stores and log level not inherited."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "MLFLOW_")) and k != "LMFORGE_HOME"}
    return {**env, "LMFORGE_HOME": str(home), "LMFORGE_PROGRESS_EVERY_S": "1"}


def run_tiny_demo(root: Path) -> DemoRun:
    cwd, home, site = root / "work", root / "work" / ".lmforge", root / "site"
    cwd.mkdir(parents=True)
    (cwd / ".venv").symlink_to(Path(sys.prefix))
    write_site(site, n_pages=40)
    demo = DemoRun(cwd, home, site, demo_env(home), "", Path())
    command = (f".venv/bin/lmforge run --preset tiny_cpu --set 'crawl.local_site.roots={{site: {site}}}' "
               f"{demo.budget()}")
    done = demo.sh(command)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    demo.stdout = done.stdout
    demo.log_file = Path(done.stdout.split("library logs go to ", 1)[1].split()[0])
    return demo
