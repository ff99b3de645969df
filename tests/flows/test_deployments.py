"""Deployments as users drive them: served by `lmforge serve-flows`, triggered through the Prefect REST API exactly
as the UI's Run button does, results checked in MLflow; plus the retraining schedule and its early exit."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from test_pipeline import SCALED_DOWN
from tiny_corpus import write_site

from flows.deployments import RETRAIN_CRON, build_deployments
from flows.presets import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_declares_the_served_deployments():
    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert {d["name"] for d in declared} == {d.name for d in build_deployments()}
    retrain = next(d for d in declared if d["name"] == "retrain")
    assert retrain["schedules"][0]["cron"] == RETRAIN_CRON
    assert all(d["enforce_parameter_schema"] for d in declared)


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.mark.slow
def test_ui_triggered_pipeline_run_registers_a_model(prefect_server, lmforge_home: Path, tmp_path: Path):
    from prefect.settings import PREFECT_API_URL

    from tasks.core.tracking import client

    api = PREFECT_API_URL.value()
    site = tmp_path / "site"
    write_site(site, n_pages=30, seed=3)
    cfg = load_config("tiny_cpu", overrides=[f"crawl.local_site.roots={{tiny: '{site}'}}", *SCALED_DOWN])
    env = {**os.environ, "PREFECT_API_URL": api, "LMFORGE_HOME": str(lmforge_home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve-flows"], cwd=ROOT, env=env,
        stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT,
    )
    try:
        http = httpx.Client(base_url=api, timeout=30)

        def deployment(name: str):
            response = http.get(f"/deployments/name/{name}/{name}")
            return response.json() if response.status_code == 200 else None

        pipeline_deployment = wait_for(lambda: deployment("pipeline"), 180, "the pipeline deployment")
        retrain_deployment = wait_for(lambda: deployment("retrain"), 60, "the retrain deployment")
        assert [s["schedule"]["cron"] for s in retrain_deployment["schedules"]] == [RETRAIN_CRON]

        # Bad parameters are rejected before anything runs (enforce_parameter_schema).
        bad = http.post(
            f"/deployments/{pipeline_deployment['id']}/create_flow_run",
            json={"parameters": {"cfg": {"train": {"max_steps": "many"}}}},
        )
        assert bad.status_code == 409, bad.text

        # What the UI's "Run" button sends: the deployment id and the form's parameters.
        def run_button():
            response = http.post(
                f"/deployments/{pipeline_deployment['id']}/create_flow_run",
                json={"parameters": {"cfg": cfg.model_dump(mode="json")}, "state": {"type": "SCHEDULED"}},
            )
            # The SQLite-backed test server answers 503 while its database is locked by the serving process's
            # polling; the UI shows that as a transient error and the user presses Run again.
            return None if response.status_code == 503 else response

        created = wait_for(run_button, 60, "the Prefect server to accept the run")
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]

        def finished():
            state = http.get(f"/flow_runs/{run_id}").json()["state"]
            return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        state = wait_for(finished, 900, "the triggered pipeline run")
        assert state["type"] == "COMPLETED", (state, (tmp_path / "serve.log").read_text()[-3000:])
    finally:
        server.terminate()
        server.wait(timeout=60)

    mlflow = client(cfg.tracking)
    champion = mlflow.get_model_version_by_alias(cfg.registry.model_name, "champion")
    run = mlflow.get_run(champion.run_id)
    assert run.data.tags["prefect.flow_run_id"] == run_id
    assert "evaluate/val_bpb" in run.data.metrics
