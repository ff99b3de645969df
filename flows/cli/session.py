"""The console and log session of a command: live stage lines on the console, library logs in a file, and what a
failure needs for its message (`RunState`); `flow_session` adds the Prefect API the command's flow runs report to."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flows.cli.bootstrap import prefect_run


@dataclass
class RunState:
    """What a command learns while it runs that `main` needs to explain a failure: the library log file (when the
    console is quiet) and the stage that was running when it failed. Filled by `quiet_console`."""

    log_file: Path | None = None
    failed_stage: str | None = None


@contextmanager
def quiet_console(args: argparse.Namespace, state: RunState) -> Iterator[None]:
    """Live stage lines on the console, library logs in `$LMFORGE_HOME/logs/<command>-<time>.log` (named at the
    start and the end); `--verbose` keeps everything on the console. A failure's traceback goes to the log, and
    the stage it happened in is kept in `state` for the error message (see `main`)."""
    import time
    import traceback

    from tasks.core import progress
    from tasks.core.artifacts import lmforge_home

    log_file = lmforge_home() / "logs" / f"{args.command}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    interval = float(os.environ.get("LMFORGE_PROGRESS_EVERY_S", "30"))
    with progress.console_session(log_file, args.verbose, interval, title=f"lmforge {args.command}") as console:
        if console.log_file:
            state.log_file = log_file
        try:
            yield
        except Exception:
            state.failed_stage = progress.active_stage()
            if state.failed_stage:
                progress.finish(state.failed_stage, "failed", ok=False)
            traceback.print_exc()  # into the log file (or the console with --verbose)
            raise


@contextmanager
def flow_session(args: argparse.Namespace, state: RunState) -> Iterator[None]:
    """How every command that runs a flow runs it: in the quiet console, against a Prefect API."""
    with quiet_console(args, state), prefect_run():
        yield
