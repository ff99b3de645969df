"""The production path, run for real: PostgreSQL behind both servers (`lmforge up` with Postgres URLs), the
deployments of prefect.yaml applied with `prefect deploy --all`, and Prefect workers (`prefect worker start`) on the
`lmforge-local` and `lmforge-gpu` process pools running what the UI's Run button creates. Checked in the Postgres
tables themselves; the `gpu` concurrency limit `lmforge up` creates keeps two training flows apart; and the data
survives `lmforge down` → `lmforge up`.

One cluster, one pair of servers and one pipeline run serve the whole module (each costs tens of seconds)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from postgres_cluster import Postgres, postgres_cluster
from processes import descends_from
from test_deployments import wait_for
from test_pipeline import SCALED_DOWN
from tiny_corpus import write_site

from flows.presets import load_config
from infra.compose import GPU_POOL, SETUP_COMMANDS
from infra.servers import WORK_POOL, ServersConfig, down, free_port, up, worker_command, worker_env

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass
class Production:
    pg: Postgres
    cfg: ServersConfig
    home: Path
    workers: dict[str, subprocess.Popen]
    http: httpx.Client
    limits_after_up: list[dict]  # the concurrency limits right after `up`, before the set-up commands ran


def venv_command(command: list[str]) -> list[str]:
    return [str(Path(sys.executable).parent / command[0]), *command[1:]]


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    home = tmp_path_factory.mktemp("production") / "home"
    with postgres_cluster() as pg, pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMFORGE_HOME", str(home))
        patch.setenv("PREFECT_HOME", str(home / "prefect"))
        cfg = ServersConfig(
            prefect_port=free_port(), mlflow_port=free_port(),
            prefect_database_url=pg.url("prefect", driver="postgresql+asyncpg"),
            mlflow_backend_store_uri=pg.url("mlflow"),
        )
        state = up(cfg)
        env = {**os.environ, **worker_env(state.prefect_url, state.mlflow_url, str(home), str(ROOT)),
               "PREFECT_WORKER_QUERY_SECONDS": "2"}  # pick runs up fast; the default polls every 10 s
        workers: dict[str, subprocess.Popen] = {}
        try:
            with httpx.Client(base_url=f"{state.prefect_url}/api", timeout=30) as http:
                limits = http.post("/v2/concurrency_limits/filter", json={}).json()
                for command in SETUP_COMMANDS:  # what the compose file's prefect-setup runs (README, Work pools)
                    done = subprocess.run(venv_command(command), cwd=ROOT, env=env, capture_output=True, text=True,
                                          timeout=600)
                    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
                for pool in (WORK_POOL, GPU_POOL):
                    workers[pool] = subprocess.Popen(
                        venv_command(worker_command(pool)), cwd=ROOT, env=env, stderr=subprocess.STDOUT,
                        stdout=open(home / f"worker-{pool}.log", "wb"), start_new_session=True,
                    )
                yield Production(pg=pg, cfg=cfg, home=home, workers=workers, http=http, limits_after_up=limits)
        finally:
            for worker in workers.values():
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=60)
            down()


def run_button(production: Production, deployment: str, parameters: dict) -> str:
    """What the UI's Run button sends (create_flow_run_from_deployment); returns the flow run id."""
    found = production.http.get(f"/deployments/name/{deployment}/{deployment}")
    assert found.status_code == 200, found.text
    created = production.http.post(f"/deployments/{found.json()['id']}/create_flow_run",
                                   json={"parameters": parameters, "state": {"type": "SCHEDULED"}})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def final_state(production: Production, run_id: str, timeout_s: float) -> str:
    def finished():
        state = production.http.get(f"/flow_runs/{run_id}").json()["state"]
        return state["type"] if state["type"] in FINAL else None

    state = wait_for(finished, timeout_s, f"flow run {run_id}")
    logs = {pool: (production.home / f"worker-{pool}.log").read_text(errors="replace")[-3000:]
            for pool in production.workers}
    assert state == "COMPLETED", (state, logs)
    return state


@pytest.fixture(scope="module")
def pipeline_run(production: Production, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object, int]:
    """The `pipeline` deployment run from the UI; returns (flow run id, its config, the pid that ran it)."""
    site = tmp_path_factory.mktemp("site")
    write_site(site, n_pages=30, seed=3)
    cfg = load_config("tiny_cpu", overrides=[f"crawl.local_site.roots={{tiny: '{site}'}}", *SCALED_DOWN])
    run_id = run_button(production, "pipeline", {"cfg": cfg.model_dump(mode="json")})

    def infrastructure_pid():  # set by the worker when it starts the run's process ("<host>:<pid>" in some versions)
        return production.http.get(f"/flow_runs/{run_id}").json()["infrastructure_pid"]

    pid = int(wait_for(infrastructure_pid, 300, "the worker to start the run").rsplit(":", 1)[-1])
    # Ask while the run's process is alive: its parent is the lmforge-local worker, not a `serve` process.
    assert descends_from(pid, production.workers[WORK_POOL].pid)
    final_state(production, run_id, 900)
    return run_id, cfg, pid


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_ui_run_executes_on_the_worker_and_lands_in_postgres(production: Production, pipeline_run):
    run_id, cfg, pid = pipeline_run
    pg = production.pg
    [(state, queue, pool, infra)] = pg.query("prefect", f"""
        SELECT fr.state_type, wq.name, wp.name, fr.infrastructure_pid FROM flow_run fr
        JOIN work_queue wq ON wq.id = fr.work_queue_id JOIN work_pool wp ON wp.id = wq.work_pool_id
        WHERE fr.id = '{run_id}'""")
    assert (state, queue, pool) == ("COMPLETED", "default", WORK_POOL)
    assert infra.rsplit(":", 1)[-1] == str(pid)

    [(mlflow_run, status)] = pg.query("mlflow", f"""
        SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid
        WHERE t.key = 'prefect.flow_run_id' AND t.value = '{run_id}'""")
    assert status == "FINISHED"
    metrics = dict(pg.query("mlflow", f"SELECT key, value FROM latest_metrics WHERE run_uuid = '{mlflow_run}'"))
    assert metrics["evaluate/val_bpb"] > 0 and metrics["crawl/outcomes/fetched"] >= 30
    [(version, version_run)] = pg.query("mlflow", f"""
        SELECT a.version, v.run_id FROM registered_model_aliases a
        JOIN model_versions v ON v.name = a.name AND v.version = a.version
        WHERE a.name = '{cfg.registry.model_name}' AND a.alias = 'champion'""")
    assert version_run == mlflow_run


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_limit_keeps_two_training_flows_apart(production: Production, pipeline_run):
    from tasks.core.artifacts import TokenSet, load_done

    _, cfg, _ = pipeline_run
    assert [(limit["name"], limit["limit"]) for limit in production.limits_after_up] == [("tag:gpu", 1)]
    tokens = next(t for d in (production.home / "runs" / "tokenize").iterdir() if (t := load_done(d, TokenSet)))
    runs = [  # two seeds: two different trainings, neither served from the stage cache
        run_button(production, "train", {"cfg": cfg.train.model_copy(update={"seed": seed, "max_steps": 25})
                                         .model_dump(mode="json"), "tokens": tokens.model_dump(mode="json")})
        for seed in (101, 102)
    ]
    for run_id in runs:
        final_state(production, run_id, 600)
    ids = ", ".join(f"'{r}'" for r in runs)
    flow_start = dict(production.pg.query("prefect", f"SELECT id::text, start_time FROM flow_run WHERE id IN ({ids})"))
    trains = production.pg.query("prefect", f"""SELECT flow_run_id::text, start_time, end_time FROM task_run
        WHERE flow_run_id IN ({ids}) AND name LIKE 'train%' ORDER BY start_time""")
    assert len(trains) == 2
    (_, _, first_end), (second_flow, second_start, _) = trains
    # The second flow was already running while the first trained (so it had to wait), and trained only after.
    assert flow_start[second_flow] < first_end, "the two flows did not run at the same time: nothing was tested"
    assert first_end <= second_start, f"training task runs overlap: {trains}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_down_then_up_keeps_runs_metrics_and_champion(production: Production, pipeline_run):
    from mlflow.tracking import MlflowClient

    run_id, cfg, _ = pipeline_run
    pg = production.pg
    counts = "SELECT (SELECT count(*) FROM flow_run), (SELECT count(*) FROM task_run)"
    mlflow_counts = ("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM metrics), "
                     "(SELECT count(*) FROM registered_model_aliases)")
    before = pg.query("prefect", counts), pg.query("mlflow", mlflow_counts)
    assert sorted(down()) == ["mlflow", "prefect"]
    state = up(production.cfg)  # the same databases: the servers find their schema migrated and their rows there
    assert (pg.query("prefect", counts), pg.query("mlflow", mlflow_counts)) == before
    assert production.http.get(f"/flow_runs/{run_id}").json()["state"]["type"] == "COMPLETED"
    mlflow = MlflowClient(tracking_uri=state.mlflow_url, registry_uri=state.mlflow_url)
    champion = mlflow.get_model_version_by_alias(cfg.registry.model_name, "champion")
    assert mlflow.get_run(champion.run_id).data.tags["prefect.flow_run_id"] == run_id
    assert "evaluate/val_bpb" in mlflow.get_run(champion.run_id).data.metrics


def test_unreachable_database_names_the_url_without_its_password_and_the_fix(tmp_path):
    closed = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://lmforge:hunter2@127.0.0.1:{closed}/prefect"
    env = {**os.environ, "LMFORGE_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "up", "--prefect-port", str(free_port()), "--mlflow-port",
         str(free_port()), "--prefect-database-url", url], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0
    assert f"postgresql+asyncpg://lmforge:***@127.0.0.1:{closed}/prefect" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
    assert "ServersConfig.prefect_database_url" in done.stderr and "start PostgreSQL" in done.stderr
    assert not (tmp_path / "home" / "servers.json").exists()  # nothing was started
