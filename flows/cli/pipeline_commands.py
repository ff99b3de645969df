"""The commands that run a flow: `run`, `ablate`, `retrain`, `finetune`, and `config` (the config `run` would use)."""

from __future__ import annotations

import argparse

from flows.cli.session import RunState, flow_session
from flows.cli.sources import ablation_config, resolved_config, resolved_model_config, tracking_config


def cmd_run(args: argparse.Namespace, state: RunState) -> int:
    cfg = resolved_config(args)
    from flows.pipeline import pipeline

    with flow_session(args, state):
        summary = pipeline(cfg)
    print("\nlmforge pipeline finished\n" + summary.table())
    if state.log_file:
        print(f"Library logs of this run: {state.log_file}")
    print(
        "\nInspect it in the UIs: `.venv/bin/lmforge up` starts the Prefect UI (http://127.0.0.1:4200) and the"
        "\nMLflow UI (http://127.0.0.1:5000) on this run's stores; `.venv/bin/lmforge down` stops them."
    )
    return 0


def cmd_ablate(args: argparse.Namespace, state: RunState) -> int:
    cfg = ablation_config(args)
    from flows.ablate import ablate

    with flow_session(args, state):
        summary = ablate(cfg)
    print(f"\nlmforge ablation finished: {len(cfg.recipes)} recipes × {len(cfg.seeds)} seeds, "
          f"{cfg.token_budget:,} tokens each\n\n{summary.table}")
    print(f"Table, chart and per-arm results: {summary.out_dir}; MLflow parent run {summary.parent_run_id}")
    return 0


def cmd_retrain(args: argparse.Namespace, state: RunState) -> int:
    from flows.retrain import RetrainConfig, retrain

    cfg = RetrainConfig(pipeline=resolved_config(args), from_scratch=args.from_scratch)
    with flow_session(args, state):
        result = retrain(cfg)
    print(result.model_dump_json(indent=2))
    return 0


def cmd_finetune(args: argparse.Namespace, state: RunState) -> int:
    if args.task == "classify":
        from flows.classify import finetune_classify
        from tasks.finetune.classify import ClassifyConfig

        cfg = resolved_model_config(ClassifyConfig, args)
        with flow_session(args, state):
            version = finetune_classify(cfg)
    elif args.task == "generate":
        from tasks.finetune.gen_task import GenTaskConfig, gen_task
        from tasks.registry.resolve import base_ref

        cfg = resolved_model_config(GenTaskConfig, args)
        with flow_session(args, state):
            ref = gen_task(cfg, base_ref(args.base, tracking_config(args)))
        print(f"fine-tuned {ref.path}: {ref.metrics}")
        return 0
    elif args.task == "dpo":
        from flows.dpo import DPOFinetuneConfig, finetune_dpo

        cfg = resolved_model_config(DPOFinetuneConfig, args)
        with flow_session(args, state):
            version = finetune_dpo(cfg)
    else:
        from flows.finetune import FinetuneConfig, finetune

        cfg = resolved_model_config(FinetuneConfig, args)
        with flow_session(args, state):
            version = finetune(cfg)
    print(f"registered {version.model_uri} (alias {version.alias or 'none'})")
    return 0


def cmd_config(args: argparse.Namespace, state: RunState) -> int:
    import yaml

    print(yaml.safe_dump(resolved_config(args).model_dump(mode="json"), sort_keys=False), end="")
    return 0
