"""Where a command's config comes from: `--preset NAME` (pipeline commands), `--config FILE.yaml`, `--set a.b=c`
(repeatable), resolved by `flows.config`; a mistake in any of them ends the command with one paragraph, exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_PRESET = "tiny_cpu"


def add_config_arguments(parser: argparse.ArgumentParser, presets: bool = True) -> None:
    if presets:
        parser.add_argument("--preset", default=DEFAULT_PRESET,
                            help="named preset (flows/presets.py): tiny_cpu, gpt_124m")
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
