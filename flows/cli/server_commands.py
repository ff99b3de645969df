"""The commands that start and stop servers: `up` / `down` (the Prefect and MLflow UIs) and `serve-flows` (the
deployments the Prefect UI triggers)."""

from __future__ import annotations

import argparse

from flows.cli.session import RunState


def cmd_up(args: argparse.Namespace, state: RunState) -> int:
    from infra.servers import ServersConfig, up

    servers = up(ServersConfig(
        prefect_port=args.prefect_port, mlflow_port=args.mlflow_port, prefect_database_url=args.prefect_database_url,
        mlflow_backend_store_uri=args.mlflow_backend_store_uri,
        mlflow_artifacts_destination=args.mlflow_artifacts_destination,
    ))
    print(f"Prefect UI: {servers.prefect_url}\nMLflow UI:  {servers.mlflow_url}\nStop them with `lmforge down`.")
    return 0


def cmd_down(args: argparse.Namespace, state: RunState) -> int:
    from infra.servers import down

    stopped = down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "no lmforge servers were running")
    return 0


def cmd_serve_flows(args: argparse.Namespace, state: RunState) -> int:
    from flows.deployments import serve_flows

    serve_flows(retrain_cron=args.retrain_cron or None)
    return 0
