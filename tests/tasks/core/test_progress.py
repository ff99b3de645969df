"""The console session of `lmforge run`: stage lines on the real stdout, everything else (prints, logging, child
processes, warnings) in the log file; the stage figures as real PNGs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from PIL import Image

SESSION = textwrap.dedent("""
    import logging, subprocess, sys, warnings
    from pathlib import Path
    from tasks.core import progress

    with progress.console_session(Path(sys.argv[1]), verbose=sys.argv[2] == "1", interval_s=0.2) as console:
        print("library chatter on stdout")
        logging.getLogger("datatrove").warning("library chatter through logging")
        subprocess.run([sys.executable, "-c", "import sys; print('child process chatter', file=sys.stderr)"])
        warnings.warn("``mlflow.pyfunc.model.ChatModel`` is deprecated since 3.0.0.", FutureWarning)
        warnings.warn("an unknown library warning")
        for step in range(1, 4):
            progress.update("train", done=step, total=3, unit="steps", note=f"loss {4 - step:.1f}")
            import time; time.sleep(0.3)
        progress.finish("train", "3 steps, loss 1.0")
    print("after the session")
""")


def run_session(tmp_path: Path, verbose: bool) -> tuple[subprocess.CompletedProcess, Path]:
    log = tmp_path / "logs" / "run.log"
    done = subprocess.run([sys.executable, "-c", SESSION, str(log), "1" if verbose else "0"], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr
    return done, log


def test_quiet_session_keeps_stage_lines_and_sends_the_rest_to_the_log(tmp_path: Path):
    done, log = run_session(tmp_path, verbose=False)
    lines = done.stdout.splitlines()
    assert any(line.startswith("done   train     3 steps, loss 1.0 (") for line in lines), done.stdout
    assert any("train" in line and "/3 steps" in line and "loss" in line for line in lines), done.stdout  # periodic
    assert lines[-1] == "after the session"  # the real stdout is back
    assert "chatter" not in done.stdout + done.stderr
    text = log.read_text()
    for chatter in ("library chatter on stdout", "library chatter through logging", "child process chatter"):
        assert chatter in text
    assert "ChatModel" not in text  # a known warning, filtered by its message
    assert "an unknown library warning" in text  # others are kept, in the log


def test_verbose_session_leaves_the_console_alone(tmp_path: Path):
    done, log = run_session(tmp_path, verbose=True)
    assert "library chatter on stdout" in done.stdout and "child process chatter" in done.stderr
    assert "ChatModel`` is deprecated" in done.stderr  # nothing filtered
    assert not log.exists()


def test_figures_are_pngs_of_the_logged_numbers(tmp_path: Path):
    from tasks.core.figures import data_funnel, funnel_rows, training_curve

    history = tmp_path / "log.jsonl"
    history.write_text("".join(json.dumps(row) + "\n" for row in [
        {"step": 10, "train/loss": 5.0, "train/lr": 1e-3}, {"step": 20, "train/loss": 4.0, "train/lr": 5e-4},
        {"step": 20, "val/loss": 4.2, "val/bpb": 1.9}]))
    curve = training_curve(history, 512, tmp_path / "curve.png")
    stats = {"steps": {
        "language": {"docs_in": 10, "docs_out": 7, "dropped": {"total": 3, "low_confidence": 3}, "position": 1},
        "input": {"docs_in": 10, "docs_out": 10, "tokens": 5000, "position": 0},
        "output": {"docs_in": 7, "docs_out": 7, "tokens": 3500, "position": 2}}}
    assert [(name, docs, reasons) for name, docs, _, reasons in funnel_rows(stats)] == [
        ("input", 10, {}), ("language", 7, {"low_confidence": 3}), ("output", 7, {})]
    funnel = data_funnel(stats, tmp_path / "funnel.png")
    for png in (curve, funnel):
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width >= 800


def test_a_finished_line_shows_the_stages_own_time_not_the_stages_it_waited_for():
    """The smol_cpu flow: the evaluate code reports progress as `evaluate` for the base model (the flow's
    `evaluate-base`), training runs for minutes, then the adapted model is evaluated under the same name."""
    import io
    import time

    from tasks.core import progress

    out = io.StringIO()
    display = progress.Display(out, live=False, interval_s=3600, width=120)
    try:
        display.update("evaluate", done=1, total=4, unit="batches")
        display.lines["evaluate"].started -= 300  # opened five minutes ago
        display.finish("evaluate-base", "val loss 3.1", seconds=31.4, reported_as="evaluate")
        display.update("train", done=48, total=48, unit="steps")
        display.finish("train", "48 steps", seconds=140.2)
        display.update("evaluate", done=1, total=4, unit="batches")  # a fresh line: the base's was closed
        display.finish("evaluate", "val loss 2.9", seconds=29.0, reported_as="evaluate")
        display.finish("shard", "1 Parquet shard", seconds=12.0, finished_at=time.time() - 3600)
        display.update("register", note="gate")
        display.finish("register", "models:/lmforge/2")
    finally:
        display.close()
    assert out.getvalue().splitlines() == [
        "done   evaluate-base val loss 3.1 (31s)", "done   train     48 steps (2m20s)",
        "done   evaluate  val loss 2.9 (29s)", "done   shard     1 Parquet shard (reused)",
        "done   register  models:/lmforge/2 (0s)",
    ]
    assert list(display.lines) == ["evaluate-base", "train", "evaluate", "shard", "register"]
