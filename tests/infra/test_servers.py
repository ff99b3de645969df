import socket
from pathlib import Path

import httpx
import pytest

from infra.servers import ServersConfig, down, pid_alive, running, up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_up_starts_both_servers_and_down_stops_them(lmforge_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PREFECT_HOME", str(lmforge_home / "prefect"))
    cfg = ServersConfig(prefect_port=free_port(), mlflow_port=free_port())
    state = up(cfg)
    try:
        assert httpx.get(f"{state.prefect_url}/api/health").json() is True
        assert httpx.get(f"{state.mlflow_url}/health").text.strip() == "OK"
        assert running() == state
        assert up(cfg) == state  # idempotent: a second `up` finds the servers alive
    finally:
        assert sorted(down()) == ["mlflow", "prefect"]
    assert not any(pid_alive(pid) for pid in state.pids.values())
    assert running() is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{state.prefect_url}/api/health")
