"""Live progress of the pipeline's stages: one line per stage on the console, library chatter in a log file.

Stages report with two calls, wherever they run (the flow's worker threads, the crawler's event loop):

    progress.update("crawl", done=pages, total=queued + pages, unit="pages", note="12 queued")
    progress.finish("crawl", "591 pages fetched, 540 documents", seconds=130.2)

Both are no-ops until a console session is open (`console_session`, opened by `lmforge run`), so library use,
tests and worker processes pay nothing. On a terminal the session draws one live `rich` line per stage (bar, counts,
rate, ETA); elsewhere (CI, a log file) it prints each active stage's line every `interval_s` seconds, and every
finished stage's result once. A finished line's time is the stage's own work (the `seconds` its manifest records,
given by the caller), never the time since the line opened: a stage whose code reports under one name
(`evaluate`) can run twice in a flow under two (`evaluate-base`, then `evaluate`), and the first line would otherwise
stay open across every stage in between. A stage reused from an earlier run says so instead of a time. Periodic lines
start with the time the stage has been running. The session also points file descriptors 1 and 2 at a per-run log
file, so the INFO logs of datatrove (loguru, in worker processes too), Prefect and MLflow, and warnings, land there
instead of on the console; `verbose=True` leaves the console untouched.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# Warnings of libraries we cannot fix, silenced by their message (never whole categories): they told a newcomer
# nothing about their run. Each entry: (message regex, why it is harmless).
# (The list holds what a `make demo` run actually raised; the rest of its log is INFO/WARNING logging, not warnings.)
KNOWN_WARNINGS: list[tuple[str, str]] = [
    (r"``mlflow\.pyfunc\.model\.ChatModel`` is deprecated",
     "models/packaging/pyfunc_entry.py packages the model as MLflow's ChatModel (deprecated in MLflow 3 for "
     "ResponsesAgent); lmforge serves through the checkpoint (tasks/serve), so nothing a user can act on"),
]


@dataclass
class StageLine:
    """The state of one stage's line: counts, the stage's own note, and its one-line result once finished."""

    name: str
    started: float = field(default_factory=time.monotonic)
    done: float = 0.0
    total: float | None = None
    unit: str = ""
    note: str = ""
    eta_s: float | None = None
    result: str | None = None
    ok: bool = True
    printed: int = 0  # periodic lines printed so far (non-terminal mode)
    last_printed: str = ""

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def eta(self) -> float | None:
        if self.eta_s is not None:
            return self.eta_s
        if self.total and self.done:
            return (self.total - self.done) / max(self.rate(), 1e-9)
        return None

    def detail(self) -> str:
        """Counts, rate, the stage's note and ETA as plain text (the non-terminal line, and the live line's tail)."""
        if self.result is not None:
            return self.result
        parts = []
        if self.unit:
            counts = f"{self.done:,.0f}" + (f"/{self.total:,.0f}" if self.total else "")
            parts.append(f"{counts} {self.unit} ({self.rate():,.1f} {self.unit}/s)")
        if self.note:
            parts.append(self.note)
        if (eta := self.eta()) is not None:
            parts.append(f"ETA {clock(eta)}")
        return " · ".join(parts)


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Display:
    """Holds the stage lines and draws them; `Live` on a terminal, periodic plain lines elsewhere."""

    def __init__(self, stream: IO[str], live: bool, interval_s: float, width: int) -> None:
        self.stream, self.interval_s, self.lines = stream, interval_s, {}
        self.lock = threading.Lock()
        self.opened_at = time.time()  # wall clock: compared with the finish times stage manifests record
        self.stop = threading.Event()
        self.live = None
        if live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=stream, width=width, force_terminal=True)
            self.live = Live(console=console, get_renderable=self.render, refresh_per_second=4, transient=False,
                             redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        else:
            self.thread = threading.Thread(target=self.tick, name="lmforge-progress", daemon=True)
            self.thread.start()

    def update(self, stage: str, **values: object) -> None:
        with self.lock:
            line = self.lines.setdefault(stage, StageLine(stage))
            if line.result is not None:  # a retried or resumed stage starts a fresh line
                line = self.lines[stage] = StageLine(stage)
            for key, value in values.items():
                if value is not None:
                    setattr(line, key, value)

    def finish(self, stage: str, result: str, ok: bool = True, seconds: float | None = None,
               finished_at: float | None = None, reported_as: str | None = None) -> None:
        with self.lock:
            if reported_as and reported_as != stage and self.open(reported_as):  # its progress came under that name
                line = self.lines.pop(reported_as)
                line.name = stage
                self.lines[stage] = line
            line = self.lines.setdefault(stage, StageLine(stage))
            if line.result is not None:
                return
            if finished_at is not None and finished_at < int(self.opened_at):  # manifests keep whole seconds
                took = "reused"
            else:
                took = clock(seconds if seconds is not None else time.monotonic() - line.started)
            line.result, line.ok = f"{result} ({took})", ok
        if self.live is None:
            self.write(f"{'done' if ok else 'FAILED':<6} {stage:<9} {line.result}")

    def open(self, stage: str) -> bool:
        return stage in self.lines and self.lines[stage].result is None

    def active(self) -> str | None:
        """The stage running now (the last one started and not finished), for error messages."""
        with self.lock:
            running = [line.name for line in self.lines.values() if line.result is None]
        return running[-1] if running else None

    def render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=10, no_wrap=True)
        grid.add_column(width=24, no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        with self.lock:
            for line in self.lines.values():
                mark = ("✔ " if line.ok else "✘ ") if line.result is not None else "… "
                style = ("green" if line.ok else "red") if line.result is not None else "cyan"
                finished = line.result is not None
                bar = ProgressBar(total=1 if finished else line.total, completed=1 if finished else line.done,
                                  width=24, pulse=not finished and not line.total)
                grid.add_row(Text(mark + line.name, style=style), bar, Text(line.detail()))
        return grid

    def due(self, line: StageLine, now: float) -> bool:
        """Whether `line` gets a periodic line now: every `interval_s` at first, then at doubling intervals
        (30 s, 1 min, 1.5 min, 2.5 min, 4.5 min, …), so a slow machine cannot flood a log; never twice the same."""
        next_at, gap = line.started, self.interval_s
        for n in range(line.printed + 1):
            next_at += gap
            gap = self.interval_s * 2 ** max(0, n - 1)
        return now >= next_at

    def tick(self) -> None:
        while not self.stop.wait(min(1.0, self.interval_s)):
            now, rows = time.monotonic(), []
            with self.lock:
                for line in self.lines.values():
                    if line.result is None and self.due(line, now):
                        line.printed += 1
                        if line.detail() != line.last_printed:
                            line.last_printed = line.detail()
                            rows.append(line)
            for line in rows:
                self.write(f"{clock(now - line.started):>6} {line.name:<9} {line.last_printed}")

    def write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stop.set()
        if self.live is not None:
            self.live.stop()


_display: Display | None = None


def update(stage: str, *, done: float | None = None, total: float | None = None, unit: str | None = None,
           note: str | None = None, eta_s: float | None = None) -> None:
    """Report how far `stage` is: `done` of `total` `unit`s (total None = unknown), a short `note`, an ETA."""
    if _display is not None:
        _display.update(stage, done=done, total=total, unit=unit, note=note, eta_s=eta_s)


def finish(stage: str, result: str, ok: bool = True, *, seconds: float | None = None,
           finished_at: float | None = None, reported_as: str | None = None) -> None:
    """End `stage`'s line with its one-line result and its time: `seconds` of the stage's own work (default: since
    the line opened); a stage that `finished_at` (epoch seconds) before this session is shown as reused.
    `reported_as`: the name the stage's code gave its progress, when the flow names the stage otherwise (the
    `evaluate` stage's code, for the flow's `evaluate-base`): that open line is the one finished."""
    if _display is not None:
        _display.finish(stage, result, ok, seconds, finished_at, reported_as)


class FailedTaskWatcher(logging.Handler):
    """Remembers the last Prefect task that logged an error: the stage a failure happened in, even when the
    stage failed before it reported any progress."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.task: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "task_name", None) or getattr(record, "task_run_name", None)
        if name:
            self.task = str(name)


_failed = FailedTaskWatcher()


def active_stage() -> str | None:
    """The stage running now, or the Prefect task that last failed (for error messages)."""
    if _failed.task:
        return _failed.task
    return _display.active() if _display is not None else None


@dataclass
class ConsoleSession:
    """What an open session hands the command: the log file and the real console streams."""

    log_file: Path | None
    out: IO[str]
    err: IO[str]


@contextmanager
def console_session(log_file: Path, verbose: bool = False, interval_s: float = 30.0,
                    title: str = "lmforge") -> Iterator[ConsoleSession]:
    """Own the console for one command: progress lines on the real stdout, everything else to `log_file` (named
    in the first line, `title: …`, written before the live lines start).

    The redirect is at the file-descriptor level so that child processes (datatrove workers, extraction pools)
    and C libraries write to the log too. With `verbose`, nothing is redirected or filtered; progress still shows.
    """
    global _display
    width = shutil.get_terminal_size().columns
    _failed.task = None
    logging.getLogger("prefect.task_runs").addHandler(_failed)
    if verbose:
        _display = Display(sys.stdout, sys.stdout.isatty(), interval_s, width)
        try:
            yield ConsoleSession(None, sys.stdout, sys.stderr)
        finally:
            _display.close()
            _display = None
            logging.getLogger("prefect.task_runs").removeHandler(_failed)
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    out = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    err = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    out.write(f"{title}: one line per stage below; library logs go to {log_file}\n")
    with warnings.catch_warnings():
        for message, _why in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        _display = Display(out, out.isatty(), interval_s, width)
        try:
            yield ConsoleSession(log_file, out, err)
        finally:
            _display.close()
            _display = None
            logging.getLogger("prefect.task_runs").removeHandler(_failed)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
