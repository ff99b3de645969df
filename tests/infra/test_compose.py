"""The production compose file cannot run here (no Docker engine); check that it parses and mirrors the locally
tested set-up: the same servers, ports and stores that `lmforge up` (infra/servers.py) starts."""

from pathlib import Path

import yaml

from infra.servers import ServersConfig

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())


def test_services_and_ports_mirror_lmforge_up():
    services = compose()["services"]
    assert {"postgres", "minio", "prefect-server", "mlflow", "worker"} <= set(services)
    local = ServersConfig()
    assert f"{local.prefect_port}:4200" in services["prefect-server"]["ports"]
    assert f"{local.mlflow_port}:5000" in services["mlflow"]["ports"]
    assert "--port 4200" in services["prefect-server"]["command"]
    assert "--port 5000" in services["mlflow"]["command"]


def test_stores_are_postgres_and_s3_and_the_worker_reaches_both_servers():
    services = compose()["services"]
    assert services["prefect-server"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://")
    mlflow_command = services["mlflow"]["command"]
    assert "--backend-store-uri postgresql://" in mlflow_command and "--artifacts-destination s3://" in mlflow_command
    worker_env = services["worker"]["environment"]
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker_env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "--pool lmforge-local" in services["worker"]["command"]
    pools = {d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert "lmforge-local" in pools


def test_every_dependency_names_a_defined_service():
    services = compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on undefined service {dependency}"
    for volume in ("postgres-data", "minio-data", "lmforge-data"):
        assert volume in compose()["volumes"]
