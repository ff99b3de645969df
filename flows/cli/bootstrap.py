"""The Prefect environment a command runs in: the embedded home under `LMFORGE_HOME`, or the servers `lmforge up`
started, and a Prefect API for the flow runs of one command."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def embedded_environment() -> None:
    """Point Prefect at the embedded home under LMFORGE_HOME unless the user configured a server themselves.

    Must run before `prefect` is imported: Prefect reads its settings at import time.
    """
    from tasks.core.artifacts import lmforge_home  # the one resolution of LMFORGE_HOME and its default

    home = lmforge_home()
    os.environ.setdefault("LMFORGE_HOME", str(home))
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per model download is noise
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level
    from infra.servers import running

    servers = running()
    if servers is not None:
        # `lmforge up` is serving this home: send flow runs to it (two servers must not share one SQLite file).
        os.environ.setdefault("PREFECT_API_URL", f"{servers.prefect_url}/api")


@contextmanager
def prefect_run() -> Iterator[None]:
    """A Prefect API for the flow runs of one command (see infra.servers.prefect_api)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from infra.servers import prefect_api

    with prefect_api() as api_url, temporary_settings({PREFECT_API_URL: api_url}):
        try:
            yield
        finally:
            # Send the last logs and events while the server still listens.
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)
            EventsWorker.drain_all(timeout=10)
