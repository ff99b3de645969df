"""The commands on one model: `eval`, `import`, `export`, `serve`, `chat` and `lineage`. `--model` is a registry
URI (`models:/lmforge@champion`) or a checkpoint directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli.model_flags import model_from_flags
from flows.cli.session import RunState, flow_session
from flows.cli.sources import resolved_model_config, tracking_config


def cmd_eval(args: argparse.Namespace, state: RunState) -> int:
    import json
    import tempfile

    from models.hardware.devices import resolve_device
    from models.weights.checkpoint import load_model
    from tasks.evaluate.evaluate import EvalConfig, evaluate_model
    from tasks.registry.resolve import resolve_checkpoint

    cfg = resolved_model_config(EvalConfig, args)
    with tempfile.TemporaryDirectory(prefix="lmforge-eval-") as tmp:
        device = str(resolve_device(cfg.device))
        model, tokenizer, _ = load_model(resolve_checkpoint(args.model, Path(tmp), tracking_config(args)), device)
        result = evaluate_model(model, tokenizer, cfg, None, device)
    core = {"core": result["core"]} if "core" in result else {}  # what CORE scored, missed and centered with
    print(json.dumps({"metrics": result["metrics"], "pins": result["pins"], "samples": result["samples"], **core},
                     indent=2))
    return 0


def cmd_import(args: argparse.Namespace, state: RunState) -> int:
    from flows.stages import import_flow
    from tasks.pretrained.importer import ImportConfig

    cfg = ImportConfig(source=args.source, revision=args.revision, document_token=args.document_token)
    with flow_session(args, state):
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


def cmd_serve(args: argparse.Namespace, state: RunState) -> int:
    from infra.servers import ensure_port_free
    from tasks.serve.serve import ServeConfig, serve

    cfg = model_from_flags(ServeConfig, args)
    ensure_port_free(cfg.host, cfg.port, "the chat API", f"lmforge serve --port {cfg.port + 1}")
    serve(cfg, tracking_config(args))
    return 0


def cmd_chat(args: argparse.Namespace, state: RunState) -> int:
    from tasks.serve.chat import chat_repl
    from tasks.serve.serve import ServeConfig, load_engine

    chat_repl(load_engine(model_from_flags(ServeConfig, args), tracking_config(args)), system=args.system)
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
