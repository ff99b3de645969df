"""Start and stop the local Prefect and MLflow servers on 127.0.0.1 (`lmforge up` / `lmforge down`).

Both default to SQLite stores under LMFORGE_HOME, the same stores the embedded pipeline writes to, so runs made
before `up` show in the UIs. Postgres / S3 (MinIO) are a matter of configuration: pass database URIs and an
artifact root; each server migrates its own schema on start. The servers run detached; their process ids and URLs
are kept in `<home>/servers.json` so `down` (and the CLI, to route runs to them) can find them.

`prefect_command`, `server_env`, `mlflow_command`, `worker_command` and `worker_env` are the one description of
the topology: `up` runs them here, and infra/docker-compose.yml must say the same (tests/infra/test_compose.py
renders them for the compose set-up and compares).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.artifacts import lmforge_home, write_json_atomic

if TYPE_CHECKING:
    from prefect import Task

TaskT = TypeVar("TaskT", bound="Task")

# The Prefect tag of task runs that need the accelerator (training, SFT): the flows tag them with it and `up` (and the
# compose set-up) limits it to `gpu_slots` concurrent runs.
GPU_TAG = "gpu"


def on_accelerator(stage: TaskT) -> TaskT:
    """`stage` (a Prefect task) tagged `GPU_TAG`: the one way a flow marks a task run as accelerator-bound."""
    return stage.with_options(tags=[GPU_TAG])


class ServersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(default="127.0.0.1", description="Interface both servers listen on.")
    prefect_port: int = Field(default=4200, description="Prefect server (API + UI) port.")
    mlflow_port: int = Field(default=5000, description="MLflow tracking server (API + UI) port.")
    prefect_database_url: str | None = Field(
        default=None, description="Prefect database, e.g. postgresql+asyncpg://…; None = SQLite under PREFECT_HOME."
    )
    mlflow_backend_store_uri: str | None = Field(
        default=None, description="MLflow backend store, e.g. postgresql://…; None = sqlite at $LMFORGE_HOME/mlflow.db."
    )
    mlflow_artifacts_destination: str | None = Field(
        default=None, description="Artifact store, e.g. s3://bucket/path (MinIO); None = $LMFORGE_HOME/mlartifacts."
    )
    start_timeout_s: float = Field(default=180.0, description="How long to wait for both servers to answer.")
    gpu_slots: int = Field(
        default=1, ge=1, description="Prefect concurrency limit on the `gpu` tag: training task runs at once."
    )


WORK_POOL = "lmforge-local"  # the process pool of prefect.yaml's CPU deployments


def prefect_command(cfg: ServersConfig) -> list[str]:
    return ["prefect", "server", "start", "--host", cfg.host, "--port", str(cfg.prefect_port)]


def server_env(cfg: ServersConfig) -> dict[str, str]:
    """The Prefect server's settings (MLflow takes its stores as flags)."""
    # The UI's JavaScript calls the API at this URL from the user's browser; Prefect's default assumes port 4200.
    public_host = "localhost" if cfg.host == "0.0.0.0" else cfg.host
    env = {"PREFECT_UI_API_URL": f"http://{public_host}:{cfg.prefect_port}/api"}
    if cfg.prefect_database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = cfg.prefect_database_url
    return env


def mlflow_command(cfg: ServersConfig, backend_store_uri: str, artifacts_destination: str) -> list[str]:
    return ["mlflow", "server", "--host", cfg.host, "--port", str(cfg.mlflow_port),
            "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts_destination,
            "--serve-artifacts"]


def worker_command(pool: str = WORK_POOL) -> list[str]:
    """A Prefect worker running the deployments of `pool` (prefect.yaml) as subprocesses of itself."""
    return ["prefect", "worker", "start", "--pool", pool, "--type", "process"]


def worker_env(prefect_url: str, mlflow_url: str, home: str, root: str) -> dict[str, str]:
    """What a worker's flow runs need: both servers, the run directory, and the checkout prefect.yaml's pull step
    changes into."""
    return {"PREFECT_API_URL": f"{prefect_url}/api", "MLFLOW_TRACKING_URI": mlflow_url, "LMFORGE_HOME": home,
            "LMFORGE_ROOT": root}


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def check_database(url: str, setting: str) -> None:
    """Fail before starting a server whose database cannot be reached: the server would only die in its log."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return  # SQLite files are created on demand
    import psycopg

    try:
        psycopg.connect(host=parsed.host, port=parsed.port or 5432, user=parsed.username,
                        password=parsed.password, dbname=parsed.database, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        reason = " ".join(str(error).split())
        raise RuntimeError(
            f"cannot reach the database {redact(url)}: {reason}\n  Fix: start PostgreSQL there, or correct host, port, "
            f"user and password in {setting}; the database must exist (infra/postgres-init.sql creates `prefect` and "
            "`mlflow`). The server creates its own tables on first start."
        ) from None


class ServerState(BaseModel):
    prefect_url: str
    mlflow_url: str
    pids: dict[str, int]


def state_file() -> Path:
    return lmforge_home() / "servers.json"


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def start_detached(command: list[str], log: Path, env: dict[str, str]) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, stdin=subprocess.DEVNULL
        )
    return process.pid


def wait_healthy(url: str, pids: dict[str, int], timeout_s: float, log_dir: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        for name, pid in pids.items():
            if not pid_alive(pid):
                raise RuntimeError(f"{name} server exited during start-up; see {log_dir / (name + '.log')}")
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s; see the logs in {log_dir}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child (exited, not yet reaped) still answers kill(0): check its state.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[-1].startswith("Z"))


def running() -> ServerState | None:
    """The servers `up` started, if they are still alive."""
    if not state_file().exists():
        return None
    state = ServerState.model_validate_json(state_file().read_text())
    return state if all(pid_alive(pid) for pid in state.pids.values()) else None


class PortInUseError(OSError):
    """A port lmforge wants is held by another program; the message names the port and the flag that moves it."""

    newcomer_message = True  # flows.errors prints the message as it is, without a traceback


def ensure_port_free(host: str, port: int, what: str, flag: str) -> None:
    """Fail before starting a server whose port is taken, instead of a server dying with a bind error in its log."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"port {port} on {host} ({what}) is already in use ({exc.strerror}): another program holds it, or "
                f"servers started by `lmforge up` for another LMFORGE_HOME. Stop that program (`lmforge down` stops "
                f"ours; `ss -ltnp 'sport = :{port}'` shows who holds it) or pick a free port: {flag}"
            ) from None


def up(cfg: ServersConfig) -> ServerState:
    if (state := running()) is not None:
        return state
    ensure_port_free(cfg.host, cfg.prefect_port, "Prefect UI", f"lmforge up --prefect-port {cfg.prefect_port + 1}")
    ensure_port_free(cfg.host, cfg.mlflow_port, "MLflow UI", f"lmforge up --mlflow-port {cfg.mlflow_port + 1}")
    home = lmforge_home()
    logs = home / "logs"
    for url, field in ((cfg.prefect_database_url, "prefect_database_url"),
                       (cfg.mlflow_backend_store_uri, "mlflow_backend_store_uri")):
        if url:
            check_database(url, f"ServersConfig.{field}, `lmforge up --{field.replace('_', '-')}`")
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(home / "prefect"))
    env.update(server_env(cfg))
    backend = cfg.mlflow_backend_store_uri or f"sqlite:///{home / 'mlflow.db'}"
    artifacts = cfg.mlflow_artifacts_destination or str(home / "mlartifacts")
    prefect, mlflow = prefect_command(cfg), mlflow_command(cfg, backend, artifacts)
    pids = {
        "prefect": start_detached([bin_path(prefect[0]), *prefect[1:]], logs / "prefect.log", env),
        "mlflow": start_detached([bin_path(mlflow[0]), *mlflow[1:]], logs / "mlflow.log", env),
    }
    state = ServerState(
        prefect_url=f"http://{cfg.host}:{cfg.prefect_port}", mlflow_url=f"http://{cfg.host}:{cfg.mlflow_port}", pids=pids
    )
    write_json_atomic(state_file(), state.model_dump())
    try:
        wait_healthy(f"{state.prefect_url}/api/health", pids, cfg.start_timeout_s, logs)
        wait_healthy(f"{state.mlflow_url}/health", pids, cfg.start_timeout_s, logs)
        ensure_gpu_limit(f"{state.prefect_url}/api", cfg.gpu_slots)
    except (RuntimeError, TimeoutError, httpx.HTTPError):
        down()
        raise
    return state


def ensure_gpu_limit(api_url: str, slots: int, busy_timeout_s: float = 120.0) -> None:
    """The tag concurrency limit that keeps training task runs (tagged `GPU_TAG`) off one accelerator at the same
    time; the same as `prefect concurrency-limit create gpu 1`, and an upsert, so a restart keeps one limit.

    A Prefect server that has just started answers 503 while its database is busy (SQLite on a loaded machine):
    that is retried, honouring Retry-After, for up to `busy_timeout_s`; any other error is raised at once."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        response = httpx.post(f"{api_url}/concurrency_limits/", json={"tag": GPU_TAG, "concurrency_limit": slots},
                              timeout=30)
        if response.status_code != 503 or time.monotonic() >= deadline:
            response.raise_for_status()
            return
        time.sleep(retry_after(response))


def retry_after(response: httpx.Response, default_s: float = 1.0, most_s: float = 10.0) -> float:
    """Seconds a 503/429 answer asks the client to wait (Retry-After in seconds), within [0, most_s]."""
    try:
        return min(max(float(response.headers.get("Retry-After", default_s)), 0.0), most_s)
    except ValueError:  # an HTTP date: not worth parsing for a local server
        return default_s


def down() -> list[str]:
    """Stop what `up` started; returns the names of the servers stopped."""
    if not state_file().exists():
        return []
    state = ServerState.model_validate_json(state_file().read_text())
    stopped = [name for name, pid in state.pids.items() if pid_alive(pid)]
    for pid in state.pids.values():
        stop_group(pid)  # the whole process group: both servers run worker subprocesses
    state_file().unlink()
    return stopped


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def stop_group(pid: int, grace_s: float = 20.0) -> None:
    if not pid_alive(pid):
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)


@contextmanager
def prefect_api(timeout_s: float = 180.0) -> Iterator[str]:
    """The Prefect API URL for one run: the configured server (PREFECT_API_URL), else a server of our own for the
    duration of the block, on the embedded SQLite store.

    Prefect's built-in ephemeral mode starts a server per *process*: worker processes (datatrove, extraction
    pools) that touch Prefect would each start one on the same SQLite file and lock it. A real server whose URL
    is exported to the whole process tree avoids that.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    home = lmforge_home()
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(home / "prefect"))
    port = free_port()
    log = home / "logs" / "prefect-run.log"
    pid = start_detached([bin_path("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                          "--no-ui"], log, env)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_healthy(f"{url}/health", {"prefect": pid}, timeout_s, log.parent)
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        stop_group(pid)
