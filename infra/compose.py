"""What infra/docker-compose.yml must say about the servers, the worker and the one-shot set-up, derived from the
functions `lmforge up` and the production tests run (infra/servers.py), so the file cannot drift from what is tested.

There is no Docker engine on CI: tests/infra/test_compose.py compares the file with `expected_services()`, and
tests/flows/test_production.py runs `SETUP_COMMANDS` and `worker_command` against real servers on Postgres.
"""

from __future__ import annotations

import shlex

from infra.servers import (
    WORK_POOL,
    ServersConfig,
    mlflow_command,
    prefect_command,
    server_env,
    worker_command,
    worker_env,
)

# Inside the compose network: servers listen on every interface at the default ports, on the `postgres` service.
DATABASE = "${POSTGRES_USER:-lmforge}:${POSTGRES_PASSWORD}@postgres:5432"
COMPOSE_SERVERS = ServersConfig(
    host="0.0.0.0", prefect_port=4200, mlflow_port=5000,
    prefect_database_url=f"postgresql+asyncpg://{DATABASE}/prefect",
    mlflow_backend_store_uri=f"postgresql://{DATABASE}/mlflow",
    mlflow_artifacts_destination="s3://mlflow/artifacts",
)
GPU_POOL = "lmforge-gpu"

# Once per fresh server: the work pools prefect.yaml names, its deployments, and the `gpu` limit (which `lmforge up`
# also creates; both are upserts). Run from the checkout that holds prefect.yaml.
SETUP_COMMANDS: list[list[str]] = [
    ["prefect", "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"],
    ["prefect", "work-pool", "create", GPU_POOL, "--type", "process", "--overwrite"],
    ["prefect", "--no-prompt", "deploy", "--all"],
    ["prefect", "concurrency-limit", "create", "gpu", str(COMPOSE_SERVERS.gpu_slots)],
]


def expected_services() -> dict[str, dict]:
    """Per compose service, the keys whose values must equal the file's."""
    cfg, published = COMPOSE_SERVERS, ServersConfig()
    prefect_url, mlflow_url = f"http://prefect-server:{cfg.prefect_port}", f"http://mlflow:{cfg.mlflow_port}"
    return {
        "prefect-server": {"command": prefect_command(cfg), "environment": server_env(cfg),
                           "ports": [f"{published.prefect_port}:{cfg.prefect_port}"]},
        "mlflow": {"command": mlflow_command(cfg, str(cfg.mlflow_backend_store_uri),
                                             str(cfg.mlflow_artifacts_destination)),
                   "ports": [f"{published.mlflow_port}:{cfg.mlflow_port}"]},
        "prefect-setup": {"command": ["sh", "-c", " && ".join(shlex.join(c) for c in SETUP_COMMANDS)],
                          "environment": worker_env(prefect_url, mlflow_url, "/data/lmforge", "/app")},
        "worker": {"command": worker_command(WORK_POOL),
                   "environment": worker_env(prefect_url, mlflow_url, "/data/lmforge", "/app")},
        "worker-gpu": {"command": worker_command(GPU_POOL),
                       "environment": worker_env(prefect_url, mlflow_url, "/data/lmforge", "/app")},
    }
