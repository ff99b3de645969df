"""The production compose file cannot run here (no Docker engine); check that it says exactly what the tested set-up
runs: infra/compose.py generates the whole file, its servers', set-up's and workers' commands, environment and ports
built by the functions `lmforge up` uses and tests/flows/test_production.py runs against Postgres-backed servers."""

from pathlib import Path

import yaml

from infra.compose import COMPOSE_SERVERS, SETUP_COMMANDS, document, render
from infra.servers import GPU_TAG, ServersConfig, on_accelerator, worker_command, worker_env

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())


def test_checked_in_file_is_what_compose_py_renders():
    assert (ROOT / "infra" / "docker-compose.yml").read_text() == render(), (
        "infra/docker-compose.yml drifted from infra/compose.py: run `.venv/bin/python -m infra.compose`")
    assert yaml.safe_load(render()) == document()  # the text says what the data says


def test_services_run_what_lmforge_up_runs():
    services, cfg = compose()["services"], COMPOSE_SERVERS
    env = worker_env(f"http://prefect-server:{cfg.prefect_port}", f"http://mlflow:{cfg.mlflow_port}", "/data/lmforge",
                     "/app")
    assert services["worker"]["command"] == worker_command("lmforge-local") and services["worker"]["environment"] == env
    assert services["prefect-server"]["ports"] == [f"{ServersConfig().prefect_port}:{cfg.prefect_port}"]
    assert ["prefect", "concurrency-limit", "create", GPU_TAG, "1"] in SETUP_COMMANDS
    assert services["prefect-setup"]["command"][2].endswith(f"concurrency-limit create {GPU_TAG} 1")


def test_stores_are_the_postgres_databases_the_init_script_creates():
    init = (ROOT / "infra" / "postgres-init.sql").read_text()
    for url in (COMPOSE_SERVERS.prefect_database_url, COMPOSE_SERVERS.mlflow_backend_store_uri):
        assert url and url.split("@postgres:5432/")[1] in init
    assert COMPOSE_SERVERS.prefect_database_url.startswith("postgresql+asyncpg://")
    assert "./postgres-init.sql:/docker-entrypoint-initdb.d/init.sql:ro" in compose()["services"]["postgres"]["volumes"]


def test_set_up_creates_the_pools_prefect_yaml_deploys_to():
    pools = {d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    created = {command[3] for command in SETUP_COMMANDS if command[1:3] == ["work-pool", "create"]}
    assert pools == created
    workers = {s["command"][4] for s in compose()["services"].values() if s.get("command", [None])[:3] == [
        "prefect", "worker", "start"]}
    assert workers == pools


def test_every_dependency_names_a_defined_service():
    services = compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on undefined service {dependency}"
    for volume in ("postgres-data", "minio-data", "lmforge-data"):
        assert volume in compose()["volumes"]


def test_the_limited_tag_is_the_one_training_runs_carry():
    from tasks.finetune.dpo import dpo
    from tasks.finetune.sft import sft
    from tasks.train.train import train

    assert on_accelerator(train).tags == on_accelerator(sft).tags == on_accelerator(dpo).tags == {GPU_TAG}


def test_flows_tag_accelerator_runs_one_way():
    """The tag has one spelling in flows: `on_accelerator(task)`; neither the literal nor GPU_TAG appears there."""
    flows = Path(__file__).resolve().parents[2] / "flows"
    for path in flows.glob("*.py"):
        source = path.read_text()
        assert "GPU_TAG" not in source and '"gpu"' not in source, f"{path.name} spells the tag; use on_accelerator"
