"""A real local Ray cluster for tests: `ray start --head --block` on 127.0.0.1, every port it opens chosen free (Ray's
defaults, e.g. 52365, may be held by someone else on a shared machine), 2 CPUs, in a short temp dir (Ray's
socket paths must stay under 107 characters). Stopped by killing its process group, never with `ray stop` (which
stops every Ray process of the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from processes import descendants, descends_from

from infra.servers import free_port

# Ray replaces 127.0.0.1 by the machine's own interface address unless clustering is off; tests talk to loopback only.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@contextmanager
def ray_head(num_cpus: int = 2, timeout_s: float = 120.0) -> Iterator[tuple[str, int]]:
    """Start a Ray head; yields (its address, the pid of the `ray start` process all Ray processes descend from)."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    low = free_port()  # worker ports: a small range starting at a port that was free just now
    high = min(low + 200, 65535)
    # Ray refuses to start when a component's port falls in the worker range or repeats another's
    taken = set(range(low, high + 1))

    def distinct_free_port() -> int:
        while (candidate := free_port()) in taken:
            pass
        taken.add(candidate)
        return candidate

    port = distinct_free_port()
    ports = {flag: distinct_free_port() for flag in (
        "--object-manager-port", "--node-manager-port", "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")}
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={port}", f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={temp}", f"--min-worker-port={low}", f"--max-worker-port={high}",
               # a logical resource: datatrove asks 2 GB per task; fixed so scheduling does not depend on free RAM
               f"--memory={8 * 1024**3}", *(f"{flag}={value}" for flag, value in ports.items())]
    log = open(temp / "head.log", "wb")
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **LOOPBACK_ONLY})
    address = f"127.0.0.1:{port}"
    try:
        wait_for_head(temp, head, timeout_s)
        yield address, head.pid
    finally:
        ours = descendants(head.pid)  # listed before the head goes: orphans are re-parented away from it
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        for pid in ours:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def wait_for_head(temp: Path, head: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}: {(temp / 'head.log').read_text()[-3000:]}")
        if "Ray runtime started" in (temp / "head.log").read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the Ray head did not start within {timeout_s:.0f} s; see {temp / 'head.log'}")


def processes_titled(prefix: str, ancestor: int) -> list[int]:
    """Pids of `ancestor`'s descendants whose command line (Ray sets it to `ray::Actor.method`) starts with `prefix`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith(prefix) and descends_from(int(entry.name), ancestor):
            found.append(int(entry.name))
    return found
