"""What one arm of an ablation trains: a recipe (named overrides of the data sections) and the proxy's train config.

A recipe may change only how the data is made (`DATA_SECTIONS`: collect, the mixture, curation, sharding). The
tokenizer, the proxy model, its token budget and the evaluation stay those of the base config, so every arm is
scored by the same yardstick and the only difference between two recipes' numbers is their data (and the seed).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.train.train import TrainConfig

DATA_SECTIONS = ("crawl", "mixture", "curate", "shard")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Names the recipe in the table, the chart and its MLflow child runs.")
    description: str = Field(default="", description="What the recipe changes, for the table.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the base config's data sections (crawl, mixture, curate, "
        "shard), nested like a --config file or with dotted keys: {'curate.minhash': false}.",
    )
    weights: dict[str, float | None] = Field(
        default_factory=dict, description="Mixture weights by dataset name (of the base's mixture.datasets), "
        "e.g. {'wiki': 0.5}; None = every row.",
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not name.strip() or "/" in name:
            raise ValueError(f"recipe name {name!r} must be non-empty and without '/'")
        return name


def nested_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys expanded (`{'curate.minhash': False}` → `{'curate': {'minhash': False}}`), nested ones merged."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = {**node[leaf], **nested_overrides(value)}
        else:
            node[leaf] = nested_overrides(value) if isinstance(value, dict) else value
    return out


def check_data_only(recipe: Recipe) -> dict[str, Any]:
    """The recipe's overrides, nested; a section outside `DATA_SECTIONS` is an error naming the recipe."""
    nested = nested_overrides(recipe.overrides)
    other = sorted(set(nested) - set(DATA_SECTIONS))
    if other:
        raise ValueError(f"recipe {recipe.name!r} overrides {other}: a recipe varies the data only "
                         f"({', '.join(DATA_SECTIONS)}); the tokenizer, the proxy model, its budget and the evaluation "
                         "are the base config's, shared by every recipe so their numbers compare")
    return nested


def with_weights(mixture: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """The mixture section (a dump) with the recipe's weights set on its datasets, by name."""
    datasets = [dict(d) for d in mixture.get("datasets", [])]
    names = [d["name"] for d in datasets]
    for name, weight in recipe.weights.items():
        if name not in names:
            raise ValueError(f"recipe {recipe.name!r} weights dataset {name!r}, which the mixture does not have "
                             f"(mixture.datasets: {names or 'none'})")
        datasets[names.index(name)]["weight"] = weight
    return {**mixture, "datasets": datasets}


def proxy_train_config(train: TrainConfig, token_budget: int, seed: int, init_from: str | None) -> TrainConfig:
    """`train` stopped at a fixed number of tokens (not seconds: a time budget depends on the machine and would give
    a faster recipe more tokens), with this arm's seed, from scratch or from `init_from` (an imported base). The
    windows are read in an order drawn from the seed: a proxy trains on far less than an epoch, and read in sequence
    it would see the same first documents whatever the recipe, and every seed the same data.

    One process per arm (like sweep trials): a proxy is small, and arms on one GPU each keep the budget exact."""
    seq_len = train.seq_len or train.model.seq_len
    per_step = train.tokens_per_step or train.batch_size * seq_len
    return train.model_copy(update={
        "max_steps": max(1, math.ceil(token_budget / per_step)), "max_seconds": None, "seed": seed, "shuffle": True,
        "init_from": init_from if init_from is not None else train.init_from,
        "checkpoint_every": 0, "nproc_per_node": 1,
    })
