"""The `lmforge` argument parser: one subcommand per handler, each with its flags. `serve` and `chat` take their
flags from `ServeConfig`'s fields (`flows.cli.model_flags`), so every serving setting is settable from the command
line and documented by the field's own description."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.cli.model_commands import cmd_chat, cmd_eval, cmd_export, cmd_import, cmd_lineage, cmd_serve
from flows.cli.model_flags import add_model_flags
from flows.cli.pipeline_commands import cmd_ablate, cmd_config, cmd_finetune, cmd_retrain, cmd_run
from flows.cli.server_commands import cmd_down, cmd_serve_flows, cmd_up
from flows.cli.sources import DEFAULT_PRESET, add_config_arguments
from tasks.serve.config import ServeConfig

SERVE_FLAGS = {"model_uri": "--model"}  # the flag every model command names its model by
CHAT_FIELDS = ("model_uri", "host", "port", "device", "quantize")  # the terminal chat loads a model, serves nothing


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
    serve = command("serve", cmd_serve, "OpenAI-compatible chat endpoint for a registered model", config=False)
    add_model_flags(serve, ServeConfig, flags=SERVE_FLAGS)
    chat = command("chat", cmd_chat, "chat with a model in the terminal", config=False)
    add_model_flags(chat, ServeConfig, CHAT_FIELDS, flags=SERVE_FLAGS)
    for sub in (serve, chat):
        sub.add_argument("--system", default=None, help="system prompt (chat)")
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
