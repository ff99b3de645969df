"""The production compose file cannot run here (no Docker engine); check that it says exactly what the tested set-up
runs: the servers', set-up's and workers' commands, environment and ports come from infra/compose.py, built by the
functions `lmforge up` uses and tests/flows/test_production.py runs against Postgres-backed servers."""

from pathlib import Path

import pytest
import yaml

from infra.compose import COMPOSE_SERVERS, SETUP_COMMANDS, expected_services

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())


@pytest.mark.parametrize("service", sorted(expected_services()))
def test_service_says_what_the_tested_set_up_runs(service: str):
    declared = compose()["services"][service]
    for key, expected in expected_services()[service].items():
        assert declared.get(key) == expected, f"docker-compose.yml: services.{service}.{key} drifted from infra/compose.py"


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
