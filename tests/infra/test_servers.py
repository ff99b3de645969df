from pathlib import Path

import httpx
import pytest

from infra.servers import ServersConfig, down, free_port, pid_alive, running, up


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


@pytest.mark.slow
def test_prefect_api_starts_a_run_server_exported_to_child_processes(lmforge_home: Path, monkeypatch):
    import os
    import subprocess
    import sys

    from infra.servers import prefect_api

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(lmforge_home / "prefect"))
    with prefect_api() as url:
        assert httpx.get(f"{url}/health").json() is True
        child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['PREFECT_API_URL'])"],
                               capture_output=True, text=True, check=True)
        assert child.stdout.strip() == url
    assert "PREFECT_API_URL" not in os.environ
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
