"""`lmforge`: the command line, a thin layer over the flows. Every command takes the same config sources:
`--preset NAME`, `--config FILE.yaml`, `--set a.b=c` (repeatable), resolved by `flows.config.load_config`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def embedded_environment() -> None:
    """Point Prefect at the embedded home under LMFORGE_HOME unless the user configured a server themselves.

    Must run before `prefect` is imported: Prefect reads its settings at import time.
    """
    home = Path(os.environ.get("LMFORGE_HOME", ".lmforge")).resolve()
    os.environ.setdefault("LMFORGE_HOME", str(home))
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level
    # The embedded server starts in a subprocess; on 2 busy cores its default 20 s start budget is too tight.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from infra.servers import running

    servers = running()
    if servers is not None:
        # `lmforge up` is serving this home: send flow runs to it (two servers must not share one SQLite file).
        os.environ.setdefault("PREFECT_API_URL", f"{servers.prefect_url}/api")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny_cpu", help="named preset (flows/presets.py): tiny_cpu, gpt_124m")
    parser.add_argument("--config", type=Path, default=None, help="YAML file overriding the preset, by stage section")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one field, e.g. --set train.max_steps=200 (repeatable)",
    )


def resolved_config(args: argparse.Namespace):
    """The config the command runs with; a mistake in it ends the command with a message, not a traceback."""
    from flows.config import load_config

    try:
        return load_config(args.preset, args.config, args.overrides)
    except (ValueError, FileNotFoundError, KeyError) as error:  # pydantic's ValidationError is a ValueError
        print(f"lmforge: invalid config: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    cfg = resolved_config(args)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import pipeline
    from infra.servers import prefect_api

    with prefect_api() as api_url, temporary_settings({PREFECT_API_URL: api_url}):
        summary = pipeline(cfg)
    print("\nlmforge pipeline finished\n" + summary.table())
    print(
        "\nInspect it in the UIs: `.venv/bin/lmforge up` starts the Prefect UI (http://127.0.0.1:4200) and the"
        "\nMLflow UI (http://127.0.0.1:5000) on this run's stores; `.venv/bin/lmforge down` stops them."
    )
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    print(yaml.safe_dump(resolved_config(args).model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from infra.servers import ServersConfig, up

    state = up(ServersConfig(prefect_port=args.prefect_port, mlflow_port=args.mlflow_port))
    print(f"Prefect UI: {state.prefect_url}\nMLflow UI:  {state.mlflow_url}\nStop them with `lmforge down`.")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from infra.servers import down

    stopped = down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "no lmforge servers were running")
    return 0


def cmd_serve_flows(args: argparse.Namespace) -> int:
    from flows.deployments import serve_flows

    serve_flows(retrain_cron=args.retrain_cron or None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmforge", description="From the open web to a chat language model.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the whole pipeline (crawl → … → register) as a Prefect flow")
    add_config_arguments(run)
    run.set_defaults(handler=cmd_run)
    config = commands.add_parser("config", help="print the resolved config as YAML (a starting point for --config)")
    add_config_arguments(config)
    config.set_defaults(handler=cmd_config)
    up = commands.add_parser("up", help="start the Prefect and MLflow servers on 127.0.0.1 and wait until they answer")
    up.add_argument("--prefect-port", type=int, default=4200)
    up.add_argument("--mlflow-port", type=int, default=5000)
    up.set_defaults(handler=cmd_up)
    down = commands.add_parser("down", help="stop the servers `lmforge up` started")
    down.set_defaults(handler=cmd_down)
    serve = commands.add_parser(
        "serve-flows", help="register the deployments with the Prefect server and run what the UI triggers"
    )
    serve.add_argument("--retrain-cron", default="0 3 * * 1", help="cron of the retrain deployment ('' = no schedule)")
    serve.set_defaults(handler=cmd_serve_flows)
    return parser


def main(argv: list[str] | None = None) -> int:
    embedded_environment()
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
