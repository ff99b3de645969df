"""Errors a newcomer meets, through the real `lmforge` command: each ends in one paragraph naming the thing and the
fix, exit status non-zero, no traceback unless `--verbose`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from demo_run import SCALED_DOWN, demo_env
from tiny_corpus import write_site

LMFORGE = str(Path(sys.executable).parent / "lmforge")


def lmforge(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([LMFORGE, *args], env=demo_env(home), capture_output=True, text=True, timeout=timeout,
                          cwd=home.parent)


def session_server_env(home: Path) -> dict[str, str]:
    """A user's environment with PREFECT_API_URL set to this session's server (`prefect_server`): a failing run needs
    a Prefect API, and one shared server spares each test a server start of its own (~20 s; `lmforge run`'s own
    start is what tests/demo_run.py runs)."""
    return {**demo_env(home), "PREFECT_API_URL": os.environ["PREFECT_API_URL"]}


def one_paragraph(done: subprocess.CompletedProcess) -> str:
    """The error the user sees: non-zero exit, no traceback, a single paragraph on stderr."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    message = done.stderr.strip()
    assert message.startswith("lmforge") and "\n\n" not in message, message
    return message


def budget(*extra: str) -> list[str]:
    return [arg for key in [*SCALED_DOWN, *extra] for arg in ("--set", key)]


def test_unknown_preset_names_the_presets(tmp_path: Path):
    message = one_paragraph(lmforge(tmp_path / "home", "run", "--preset", "tiny-cpu"))
    assert "unknown preset 'tiny-cpu' (did you mean tiny_cpu?)" in message
    assert "gpt_124m, smol_cpu, tiny_cpu" in message and "flows/presets.py" in message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    config = tmp_path / "my.yaml"
    config.write_text("train:\n  max_steps: 20\n  lr 0.001\n  batch_size: 4\n")  # missing colon on line 3
    message = one_paragraph(lmforge(tmp_path / "home", "run", "--config", str(config)))
    assert f"{config} line 4" in message and "`key: value`" in message


def test_misspelt_key_suggests_the_right_one(tmp_path: Path):
    config = tmp_path / "my.yaml"
    config.write_text("trian:\n  max_steps: 20\n")
    message = one_paragraph(lmforge(tmp_path / "home", "run", "--config", str(config)))
    assert "unknown key `trian` (did you mean `train`?)" in message
    message = one_paragraph(lmforge(tmp_path / "home", "eval", "--set", "max_new_token=4"))  # eval's own config
    assert "unknown key `max_new_token` (did you mean `max_new_tokens`?)" in message


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_taken_names_the_port_and_the_flag(tmp_path: Path, taken_port: int):
    message = one_paragraph(lmforge(tmp_path / "home", "up", "--prefect-port", str(taken_port), "--mlflow-port", "1"))
    assert f"port {taken_port} on 127.0.0.1 (Prefect UI) is already in use" in message
    assert f"--prefect-port {taken_port + 1}" in message
    message = one_paragraph(lmforge(tmp_path / "home", "serve", "--port", str(taken_port)))
    assert f"lmforge serve --port {taken_port + 1}" in message
    verbose = lmforge(tmp_path / "home", "up", "--verbose", "--prefect-port", str(taken_port))
    assert "Traceback" in verbose.stderr and "PortInUseError" in verbose.stderr


@pytest.mark.slow
def test_missing_demo_corpus_explains_apt_and_the_alternative(prefect_server, tmp_path: Path):
    """Where apt-get is missing, `make corpus` installs nothing and the demo's directories do not exist."""
    home = tmp_path / "home"
    done = subprocess.run([LMFORGE, "run", *budget("crawl.local_site.roots={python: /nonexistent/python3.11/html}")],
                          env=session_server_env(home), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    message = one_paragraph(done)
    assert "in stage crawl" in message and "/nonexistent/python3.11/html is not a directory" in message
    assert "make corpus" in message and "apt-get" in message and "crawl.local_site.roots={site:" in message
    log = Path(message.split("The full log is ")[1].rstrip("."))
    assert "Traceback" in log.read_text()  # the traceback is kept, in the run's log file


def can_mount_tmpfs(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "mount", "-t", "tmpfs", "-o", "size=8k",
                           "tmpfs", str(probe)], capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
def test_disk_full_during_a_stage_names_the_stage_and_the_fix(prefect_server, tmp_path: Path):
    """A real full filesystem: the stage directories on an 8 KiB tmpfs (in a user namespace), the rest on disk."""
    if not can_mount_tmpfs(tmp_path):
        pytest.skip("needs unshare with user namespaces to mount a small tmpfs")
    home, site = tmp_path / "home", tmp_path / "site"
    write_site(site, n_pages=40)
    (home / "runs").mkdir(parents=True)
    command = " ".join([LMFORGE, "run", *(f"'{arg}'" for arg in budget(f"crawl.local_site.roots={{tiny: {site}}}"))])
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "bash", "-c",
         f"mount -t tmpfs -o size=8k tmpfs {home / 'runs'} && exec {command}"],
        env=session_server_env(home), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    message = one_paragraph(done)
    assert "the disk is full in stage crawl" in message, message
    assert "LMFORGE_HOME" in message and "resumes" in message and "df -h" in message
