"""`lmforge`: the command line, a thin layer over the flows and stage functions.

Commands that run a flow take the same config sources: `--preset NAME` (pipeline commands), `--config FILE.yaml`,
`--set a.b=c` (repeatable), resolved by `flows.config`. Model commands take `--model`: a registry URI
(`models:/lmforge@champion`) or a checkpoint directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PRESET = "tiny_cpu"


@dataclass
class RunState:
    """What a command learns while it runs that `main` needs to explain a failure: the library log file (when the
    console is quiet) and the stage that was running when it failed. Filled by `quiet_console`."""

    log_file: Path | None = None
    failed_stage: str | None = None


def embedded_environment() -> None:
    """Point Prefect at the embedded home under LMFORGE_HOME unless the user configured a server themselves.

    Must run before `prefect` is imported: Prefect reads its settings at import time.
    """
    home = Path(os.environ.get("LMFORGE_HOME", ".lmforge")).resolve()
    os.environ.setdefault("LMFORGE_HOME", str(home))
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per model download is noise
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level
    from infra.servers import running

    servers = running()
    if servers is not None:
        # `lmforge up` is serving this home: send flow runs to it (two servers must not share one SQLite file).
        os.environ.setdefault("PREFECT_API_URL", f"{servers.prefect_url}/api")


def add_config_arguments(parser: argparse.ArgumentParser, presets: bool = True) -> None:
    if presets:
        parser.add_argument("--preset", default=DEFAULT_PRESET, help="named preset (flows/presets.py): tiny_cpu, gpt_124m")
    parser.add_argument("--config", type=Path, default=None, help="YAML file overriding the defaults, by section")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one field, e.g. --set train.max_steps=200 (repeatable)",
    )


def config_error(error: Exception, model_type=None) -> SystemExit:
    from flows.errors import config_message

    print(f"lmforge: {config_message(error, model_type)}", file=sys.stderr)
    return SystemExit(2)


def resolved_config(args: argparse.Namespace):
    """The pipeline config the command runs with; a mistake in it ends the command with a message."""
    import yaml

    from flows.config import PipelineConfig
    from flows.presets import load_config

    try:
        return load_config(args.preset, args.config, args.overrides)
    except (ValueError, FileNotFoundError, KeyError, yaml.YAMLError) as error:  # ValidationError is a ValueError
        raise config_error(error, PipelineConfig) from None


def own_overrides(model_type, overrides: list[str]) -> list[str]:
    """The `--set` overrides meant for `model_type`: all of them, less `tracking.…` when it has no tracking section
    (those configure where the model is looked up, see `tracking_config`)."""
    if "tracking" in model_type.model_fields:
        return list(overrides)
    return [o for o in overrides if not o.strip().startswith("tracking.")]


def resolved_model_config(model_type, args: argparse.Namespace):
    import yaml

    from flows.config import apply_sources

    try:
        return apply_sources(
            model_type, model_type().model_dump(mode="json"), args.config, own_overrides(model_type, args.overrides)
        )
    except (ValueError, FileNotFoundError, KeyError, yaml.YAMLError) as error:
        raise config_error(error, model_type) from None


def tracking_config(args: argparse.Namespace):
    """The MLflow store model commands read from: the defaults plus any `--set tracking.…` overrides. A model
    command's other overrides belong to its own config (EvalConfig, GenTaskConfig), never to the pipeline's."""
    from flows.config import apply_sources
    from tasks.core.tracking import TrackingConfig

    keys = [o.strip().removeprefix("tracking.") for o in args.overrides if o.strip().startswith("tracking.")]
    try:
        return apply_sources(TrackingConfig, {}, None, keys)
    except ValueError as error:
        raise config_error(error, TrackingConfig) from None


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


@contextmanager
def quiet_console(args: argparse.Namespace, state: RunState) -> Iterator[None]:
    """Live stage lines on the console, library logs in `$LMFORGE_HOME/logs/<command>-<time>.log` (named at the
    start and the end); `--verbose` keeps everything on the console. A failure's traceback goes to the log, and
    the stage it happened in is kept in `state` for the error message (see `main`)."""
    import time
    import traceback

    from tasks.core import progress
    from tasks.core.artifacts import lmforge_home

    log_file = lmforge_home() / "logs" / f"{args.command}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    interval = float(os.environ.get("LMFORGE_PROGRESS_EVERY_S", "30"))
    with progress.console_session(log_file, args.verbose, interval, title=f"lmforge {args.command}") as console:
        if console.log_file:
            state.log_file = log_file
        try:
            yield
        except Exception:
            state.failed_stage = progress.active_stage()
            if state.failed_stage:
                progress.finish(state.failed_stage, "failed", ok=False)
            traceback.print_exc()  # into the log file (or the console with --verbose)
            raise


def cmd_run(args: argparse.Namespace, state: RunState) -> int:
    cfg = resolved_config(args)
    from flows.pipeline import pipeline

    with quiet_console(args, state), prefect_run():
        summary = pipeline(cfg)
    print("\nlmforge pipeline finished\n" + summary.table())
    if state.log_file:
        print(f"Library logs of this run: {state.log_file}")
    print(
        "\nInspect it in the UIs: `.venv/bin/lmforge up` starts the Prefect UI (http://127.0.0.1:4200) and the"
        "\nMLflow UI (http://127.0.0.1:5000) on this run's stores; `.venv/bin/lmforge down` stops them."
    )
    return 0


def ablation_config(args: argparse.Namespace):
    """The base pipeline config (preset, --config, --set) plus the ablation plan (--recipes file, then flags)."""
    import yaml

    from flows.ablate import AblationConfig

    plan: dict = {}
    try:
        if args.recipes is not None:
            if not args.recipes.is_file():
                raise FileNotFoundError(f"recipes file {args.recipes} does not exist")
            with open(args.recipes, encoding="utf-8") as stream:
                loaded = yaml.safe_load(stream) or {}
            # a list of recipes, or a mapping with `recipes` and any other AblationConfig field but `base`
            plan = {"recipes": loaded} if isinstance(loaded, list) else dict(loaded)
            if "base" in plan:
                raise ValueError(f"{args.recipes}: the base config comes from --preset/--config/--set, not the "
                                 "recipes file")
        for key in ("seeds", "token_budget", "metric"):
            if getattr(args, key) is not None:
                plan[key] = getattr(args, key)
        return AblationConfig.model_validate({"base": resolved_config(args), **plan})
    except (ValueError, FileNotFoundError, yaml.YAMLError) as error:
        raise config_error(error, AblationConfig) from None


def cmd_ablate(args: argparse.Namespace, state: RunState) -> int:
    cfg = ablation_config(args)
    from flows.ablate import ablate

    with quiet_console(args, state), prefect_run():
        summary = ablate(cfg)
    print(f"\nlmforge ablation finished: {len(cfg.recipes)} recipes × {len(cfg.seeds)} seeds, "
          f"{cfg.token_budget:,} tokens each\n\n{summary.table}")
    print(f"Table, chart and per-arm results: {summary.out_dir}; MLflow parent run {summary.parent_run_id}")
    return 0


def cmd_retrain(args: argparse.Namespace, state: RunState) -> int:
    from flows.retrain import RetrainConfig, retrain

    cfg = RetrainConfig(pipeline=resolved_config(args), from_scratch=args.from_scratch)
    with quiet_console(args, state), prefect_run():
        result = retrain(cfg)
    print(result.model_dump_json(indent=2))
    return 0


def cmd_finetune(args: argparse.Namespace, state: RunState) -> int:
    if args.task == "classify":
        from flows.classify import finetune_classify
        from tasks.finetune.classify import ClassifyConfig

        cfg = resolved_model_config(ClassifyConfig, args)
        with quiet_console(args, state), prefect_run():
            version = finetune_classify(cfg)
    elif args.task == "generate":
        from tasks.finetune.gen_task import GenTaskConfig, gen_task
        from tasks.registry.resolve import base_ref

        cfg = resolved_model_config(GenTaskConfig, args)
        with quiet_console(args, state), prefect_run():
            ref = gen_task(cfg, base_ref(args.base, tracking_config(args)))
        print(f"fine-tuned {ref.path}: {ref.metrics}")
        return 0
    elif args.task == "dpo":
        from flows.dpo import DPOFinetuneConfig, finetune_dpo

        cfg = resolved_model_config(DPOFinetuneConfig, args)
        with quiet_console(args, state), prefect_run():
            version = finetune_dpo(cfg)
    else:
        from flows.finetune import FinetuneConfig, finetune

        cfg = resolved_model_config(FinetuneConfig, args)
        with quiet_console(args, state), prefect_run():
            version = finetune(cfg)
    print(f"registered {version.model_uri} (alias {version.alias or 'none'})")
    return 0


def cmd_eval(args: argparse.Namespace, state: RunState) -> int:
    import json
    import tempfile

    from models.checkpoint import load_model
    from models.devices import resolve_device
    from tasks.evaluate.evaluate import EvalConfig, evaluate_model
    from tasks.registry.resolve import resolve_checkpoint

    cfg = resolved_model_config(EvalConfig, args)
    with tempfile.TemporaryDirectory(prefix="lmforge-eval-") as tmp:
        device = str(resolve_device(cfg.device))
        model, tokenizer, _ = load_model(resolve_checkpoint(args.model, Path(tmp), tracking_config(args)), device)
        result = evaluate_model(model, tokenizer, cfg, None, device)
    core = {"core": result["core"]} if "core" in result else {}  # what CORE scored, missed and centered with
    print(json.dumps({"metrics": result["metrics"], "samples": result["samples"], **core}, indent=2))
    return 0


def cmd_import(args: argparse.Namespace, state: RunState) -> int:
    from flows.stages import import_flow
    from tasks.pretrained.importer import ImportConfig

    cfg = ImportConfig(source=args.source, revision=args.revision, document_token=args.document_token)
    with quiet_console(args, state), prefect_run():
        ref = import_flow(cfg)
    checkpoint = ref.dir / ref.checkpoint
    print(f"imported {args.source}: {ref.n_params:,} parameters → {checkpoint}\n"
          f"  chat with it: .venv/bin/lmforge chat --model {checkpoint}\n"
          f"  adapt it:     .venv/bin/lmforge run --preset smol_cpu --set base.source={args.source}")
    return 0


def cmd_export(args: argparse.Namespace, state: RunState) -> int:
    from tasks.registry.export import export_hf

    out = export_hf(args.model, Path(args.out), tracking=tracking_config(args))
    print(f"exported {args.model} to {out} (Hugging Face format)")
    return 0


def serve_config(args: argparse.Namespace):
    from tasks.serve.serve import ServeConfig

    limits = {"max_batch": args.max_batch, "max_queue": args.max_queue} if hasattr(args, "max_batch") else {}
    return ServeConfig(model_uri=args.model, host=args.host, port=args.port, device=args.device,
                       quantize=args.quantize, **limits)


def cmd_serve(args: argparse.Namespace, state: RunState) -> int:
    from infra.servers import ensure_port_free
    from tasks.serve.serve import serve

    ensure_port_free(args.host, args.port, "the chat API", f"lmforge serve --port {args.port + 1}")

    serve(serve_config(args), tracking_config(args))
    return 0


def cmd_chat(args: argparse.Namespace, state: RunState) -> int:
    from tasks.serve.chat import chat_repl
    from tasks.serve.serve import load_engine

    chat_repl(load_engine(serve_config(args), tracking_config(args)), system=args.system)
    return 0


def cmd_lineage(args: argparse.Namespace, state: RunState) -> int:
    from tasks.registry.lineage import lineage, training_urls

    found = lineage(tracking_config(args), args.name, args.alias)
    if found is None:
        print(f"no version of {args.name} holds alias {args.alias}", file=sys.stderr)
        return 1
    print(f"{args.name}@{args.alias} = version {found.version}, MLflow run {found.run_id}")
    if found.parent:
        print(f"  {'parent':<10} {found.parent}")
    for stage in ("crawl", "tokens", "checkpoint"):
        ref = getattr(found, stage)
        print(f"  {stage:<10} {ref.path if ref else '(not on disk)'}")
    if args.urls:
        print("\n".join(training_urls(found)))
    return 0


def cmd_config(args: argparse.Namespace, state: RunState) -> int:
    import yaml

    print(yaml.safe_dump(resolved_config(args).model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_up(args: argparse.Namespace, state: RunState) -> int:
    from infra.servers import ServersConfig, up

    state = up(ServersConfig(
        prefect_port=args.prefect_port, mlflow_port=args.mlflow_port, prefect_database_url=args.prefect_database_url,
        mlflow_backend_store_uri=args.mlflow_backend_store_uri,
        mlflow_artifacts_destination=args.mlflow_artifacts_destination,
    ))
    print(f"Prefect UI: {state.prefect_url}\nMLflow UI:  {state.mlflow_url}\nStop them with `lmforge down`.")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmforge", description="From the open web to a chat language model.")
    parser.add_argument("--verbose", "-v", action="store_true", help="show library logs, warnings and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help: str, config: bool = True, presets: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                         help="show library logs, warnings and tracebacks on the console")
        if config:
            add_config_arguments(sub, presets)
        else:  # commands without config flags still resolve the default config (e.g. for the MLflow tracking URI)
            sub.set_defaults(config=None, overrides=[])
        if not (config and presets):
            sub.set_defaults(preset=DEFAULT_PRESET)
        sub.set_defaults(handler=handler)
        return sub

    def model_argument(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", default="models:/lmforge@champion", help="models:/name@alias or checkpoint dir")

    command("run", cmd_run, "run the whole pipeline (crawl → … → register) as a Prefect flow")
    ablation = command("ablate", cmd_ablate, "compare data recipes: recipes × seeds of small proxy models")
    ablation.add_argument("--recipes", type=Path, default=None, help="YAML: a list of recipes ({name, description, "
                          "overrides, weights}) or a mapping with `recipes:` and seeds/token_budget/metric/alpha")
    ablation.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=None,
                          help="comma-separated training seeds, e.g. 0,1,2")
    ablation.add_argument("--token-budget", type=int, default=None, help="tokens each proxy trains on")
    ablation.add_argument("--metric", default=None, help="ranking metric (default val_bpb)")
    retrain = command("retrain", cmd_retrain, "retrain now: new pages since the last crawl, continue the champion")
    retrain.add_argument("--from-scratch", action="store_true", help="train a new model instead of continuing")
    finetune = command("finetune", cmd_finetune, "fine-tune a registered model (chat SFT, DPO or a classifier)",
                       presets=False)
    finetune.add_argument("--task", choices=["chat", "dpo", "classify", "generate"], default="chat",
                          help="chat SFT, DPO preference tuning of a chat model, a classifier ({text, label}), or a "
                          "generative task ({input, output} pairs)")
    finetune.add_argument("--base", default="models:/lmforge@champion", help="base model (--task generate)")
    evaluate = command("eval", cmd_eval, "evaluate a model (--set text_files=[…], hellaswag_file=…)", presets=False)
    model_argument(evaluate)
    imports = command("import", cmd_import, "import open weights (hub id, HF directory, GGUF file) as a checkpoint",
                      config=False)
    imports.add_argument("source", help="hub id (org/name), HF model directory, or .gguf file")
    imports.add_argument("--revision", default=None, help="hub branch, tag or commit")
    imports.add_argument("--document-token", default=None, help="token between documents (default: <|endoftext|>, "
                         "else bos, else eos)")
    export = command("export", cmd_export, "export a model to Hugging Face format", config=False)
    model_argument(export)
    export.add_argument("--out", required=True, help="output directory")
    for name, handler, help in (
        ("serve", cmd_serve, "OpenAI-compatible chat endpoint for a registered model"),
        ("chat", cmd_chat, "chat with a model in the terminal"),
    ):
        sub = command(name, handler, help, config=False)
        model_argument(sub)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
        sub.add_argument("--system", default=None, help="system prompt (chat)")
        sub.add_argument("--device", default="auto", help="auto (CUDA in bf16 when present, else CPU), cpu, cuda")
        sub.add_argument("--quantize", choices=["none", "int8"], default="none",
                         help="int8: int8 linear weights on CPU, faster decoding at a cost (models/quantize.py)")
        if name == "serve":
            sub.add_argument("--max-batch", type=int, default=8, help="answers decoded together (continuous batching)")
            sub.add_argument("--max-queue", type=int, default=16, help="requests waiting beyond those (429 beyond)")
    lineage = command("lineage", cmd_lineage, "from a model version to its run, stage outputs and URLs", config=False)
    lineage.add_argument("--name", default="lmforge")
    lineage.add_argument("--alias", default="champion")
    lineage.add_argument("--urls", action="store_true", help="print the crawled URLs behind the version")
    command("config", cmd_config, "print the resolved config as YAML (a starting point for --config)")
    up = command("up", cmd_up, "start the Prefect and MLflow servers on 127.0.0.1", config=False)
    up.add_argument("--prefect-port", type=int, default=4200)
    up.add_argument("--mlflow-port", type=int, default=5000)
    up.add_argument("--prefect-database-url", default=None, help="e.g. postgresql+asyncpg://user:pw@host:5432/prefect")
    up.add_argument("--mlflow-backend-store-uri", default=None, help="e.g. postgresql://user:pw@host:5432/mlflow")
    up.add_argument("--mlflow-artifacts-destination", default=None, help="e.g. s3://bucket/path (MinIO)")
    command("down", cmd_down, "stop the servers `lmforge up` started", config=False)
    serve_flows = command("serve-flows", cmd_serve_flows, "serve the deployments: run what the Prefect UI triggers",
                          config=False)
    serve_flows.add_argument("--retrain-cron", default="0 3 * * 1", help="cron of the retrain deployment ('' = none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    # On SIGTERM unwind normally, so the servers a command started (infra.servers.prefect_api) are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    embedded_environment()
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


if __name__ == "__main__":
    sys.exit(main())
