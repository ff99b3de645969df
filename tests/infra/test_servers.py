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


def test_gpu_limit_waits_out_a_busy_server_and_raises_other_errors():
    """A just-started Prefect server answers 503 while its database is busy: `up` retries; a 4xx is raised."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from infra.servers import GPU_TAG, ensure_gpu_limit

    answers, bodies = [503, 503, 200], []

    class Api(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status = answers.pop(0) if answers else 422
            self.send_response(status)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}/api"
    try:
        ensure_gpu_limit(api, 1)
        assert len(bodies) == 3 and bodies[-1] == {"tag": GPU_TAG, "concurrency_limit": 1}
        with pytest.raises(httpx.HTTPStatusError, match="422"):
            ensure_gpu_limit(api, 1)
        assert len(bodies) == 4  # not retried
    finally:
        server.shutdown()
