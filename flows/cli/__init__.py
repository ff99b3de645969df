"""`lmforge`: the command line, a thin layer over the flows and stage functions (`main`, the `lmforge` script).

One module per job: `bootstrap` (the Prefect environment, before Prefect is imported), `sources` (config from
`--preset`, `--config`, `--set`), `session` (the quiet console and log file, and `flow_session`, the one way a
command runs a flow), `model_flags` (flags generated from a pydantic config), the handlers (`pipeline_commands`,
`model_commands`, `server_commands`) and `parser`.
"""

from __future__ import annotations

import signal
import sys


def main(argv: list[str] | None = None) -> int:
    from flows.cli.bootstrap import embedded_environment

    # On SIGTERM unwind normally, so the servers a command started (infra.servers.prefect_api) are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    embedded_environment()  # before the parser's imports: Prefect reads its settings when first imported
    from flows.cli.parser import build_parser
    from flows.cli.session import RunState

    args = build_parser().parse_args(argv)
    state = RunState()
    try:
        return args.handler(args, state)
    except Exception as error:
        if args.verbose:
            raise
        from flows.errors import explain

        print(explain(error, args.command, state.failed_stage, state.log_file), file=sys.stderr)
        return 1
