"""`PipelineConfig`: the stage configs composed into the one object that drives the CLI, the Prefect form and MLflow.

Each stage owns its config in its task package; this module composes them and applies config sources (a preset's
dump, an optional YAML file, `a.b=c` overrides, in that order; `flows.presets.load_config` starts from a preset).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tasks.ablate.plan import Recipe, check_data_only, with_weights
from tasks.collect.config import CrawlConfig
from tasks.collect.mixture import MixtureConfig
from tasks.core.tracking import TrackingConfig
from tasks.curate.config import CurateConfig
from tasks.evaluate.evaluate import EvalConfig
from tasks.finetune.sft import SFTConfig
from tasks.finetune.sft_data import SFTDataConfig
from tasks.pretrained.importer import ImportConfig
from tasks.registry.register import RegisterConfig
from tasks.shard.shard import ShardConfig
from tasks.tokenize.tokenize import TokenizeConfig
from tasks.train.train import TrainConfig

M = TypeVar("M", bound=BaseModel)


class PipelineConfig(BaseModel):
    """Everything one pipeline run needs, stage by stage."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="custom", description="Preset the config started from; names the MLflow run.")
    base: ImportConfig | None = Field(
        default=None, description="Start from this open-weights model (hub id, HF directory or GGUF file): its "
        "tokenizer encodes the corpus, train continues its pretraining. None = train from scratch.",
    )
    crawl: CrawlConfig = Field(default_factory=CrawlConfig, description="Collect: seeds, scope, politeness.")
    mixture: MixtureConfig = Field(default_factory=MixtureConfig, description="Collect: local datasets (Parquet/"
                                   "JSONL) mixed into the crawl at weights; none by default.")
    curate: CurateConfig = Field(default_factory=CurateConfig, description="Curate: filters and dedup.")
    shard: ShardConfig = Field(default_factory=ShardConfig, description="Shard: Parquet output.")
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig, description="Tokenize: BPE and token shards.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Train: model and optimisation.")
    sft_data: SFTDataConfig = Field(default_factory=SFTDataConfig, description="Chat SFT conversations (with sft).")
    sft: SFTConfig | None = Field(default=None, description="Chat SFT after training; None = no SFT stage.")
    evaluate: EvalConfig = Field(default_factory=EvalConfig, description="Evaluate: held-out and downstream.")
    registry: RegisterConfig = Field(default_factory=RegisterConfig, description="Register: MLflow model + gate.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking server.")
    questions: list[str] = Field(
        default_factory=list, description="Asked of the registered model at the end (greedy), answers printed "
        "under the summary.",
    )


def config_section(model_type: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The config class of field `key` when it is a nested section (also inside `X | None`), else None."""
    field = model_type.model_fields.get(key)
    if field is None:
        return None
    for candidate in (field.annotation, *typing.get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def merge_into(model_type: type[BaseModel], data: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`data` with `update` applied: nested config sections merge, every other value is replaced.

    So `--set crawl.local_site.roots={a: /x}` replaces the preset's roots instead of adding to them, while a YAML
    file naming only `train.max_steps` keeps the rest of the train section. Unknown keys pass through, for
    validation to reject with their name.
    """
    merged = dict(data)
    for key, value in update.items():
        section = config_section(model_type, key)
        if section is not None and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_into(section, merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(override: str) -> dict[str, Any]:
    """`train.max_steps=200` → `{"train": {"max_steps": 200}}`; the value is parsed as YAML (numbers, lists, …)."""
    if "=" not in override:
        raise ValueError(f"--set expects KEY=VALUE with a dotted key, e.g. train.max_steps=200; got {override!r}")
    key, raw = override.split("=", 1)
    value: Any = yaml.safe_load(raw) if raw else ""
    for part in reversed(key.strip().split(".")):
        if not part:
            raise ValueError(f"--set {override!r}: empty component in dotted key {key!r}")
        value = {part: value}
    return value


def apply_sources(
    model_type: type[M], data: dict[str, Any], config_file: Path | None = None, overrides: Sequence[str] = ()
) -> M:
    """`data` (a preset's dump), then the YAML file, then `--set` overrides, validated as `model_type`."""
    if config_file is not None:
        if not Path(config_file).exists():
            raise FileNotFoundError(f"config file {config_file} does not exist")
        with open(config_file, encoding="utf-8") as stream:  # a stream, so YAML errors name the file
            loaded = yaml.safe_load(stream) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {config_file} must hold a mapping of sections, got {type(loaded).__name__}")
        data = merge_into(model_type, data, loaded)
    for override in overrides:
        data = merge_into(model_type, data, parse_override(override))
    return model_type.model_validate(data)


def recipe_config(base: PipelineConfig, recipe: Recipe) -> PipelineConfig:
    """`base` with an ablation recipe's data overrides and mixture weights applied; errors name the recipe."""
    from pydantic import ValidationError

    data = merge_into(PipelineConfig, base.model_dump(mode="json"), check_data_only(recipe))
    if recipe.weights:
        data["mixture"] = with_weights(data["mixture"], recipe)
    try:
        return PipelineConfig.model_validate({**data, "name": f"{base.name}/{recipe.name}"})
    except ValidationError as error:
        raise ValueError(f"recipe {recipe.name!r}: {error}") from None
