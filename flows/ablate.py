"""Data ablation: K recipes (overrides of the base config's data sections) × S seeds, each a small proxy model
trained on a fixed token budget and scored on one fixed held-out set; an MLflow parent run with a child per arm,
a table, a chart and a verdict on whether the best recipe's lead exceeds the seed noise.

Every stage goes through its normal task, so what recipes share (the crawl when only curation differs, the
tokenizer, the held-out set) is computed once and read from the stage cache after. The held-out set and the
tokenizer come from the base config's own data: its val split (documents chosen by a hash of their id, so no
recipe trains on them: every recipe splits with the same salt) tokenized with the one tokenizer every proxy uses,
trained on the base data's train split, or the imported base model's.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flows.config import PipelineConfig, recipe_config
from flows.presets import tiny_cpu
from infra.servers import on_accelerator
from tasks.ablate.plan import Recipe, proxy_train_config
from tasks.ablate.results import AblationSummary, log_arm, write_ablation
from tasks.collect.crawl import crawl
from tasks.collect.mixture import mix
from tasks.core.artifacts import ShardSet
from tasks.core.report import stage_done, tracked_run
from tasks.curate.curate import curate
from tasks.evaluate.evaluate import evaluate
from tasks.pretrained.importer import import_base
from tasks.shard.shard import shard
from tasks.tokenize.tokenize import tokenize
from tasks.train.train import train

DEFAULT_RECIPES = [
    Recipe(name="baseline", description="the base config"),
    Recipe(name="no-dedup", description="exact and MinHash dedup off",
           overrides={"curate": {"exact_dedup": False, "minhash": False}}),
    Recipe(name="strict-quality", description="Gopher min 100 words/doc",
           overrides={"curate": {"filter_overrides": {"gopher_quality": {"min_doc_words": 100}}}}),
]


class AblationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: PipelineConfig = Field(default_factory=tiny_cpu, description="The shared config: its data sections are "
                                 "what recipes override; tokenizer, proxy model (train), evaluation and the held-out "
                                 "set are the same for every recipe.")
    recipes: list[Recipe] = Field(default_factory=lambda: list(DEFAULT_RECIPES), description="Named data recipes.")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="Training seeds run for every recipe.")
    token_budget: int = Field(default=500_000, ge=1, description="Tokens each proxy trains on (steps = budget / "
                              "tokens per step), whatever the recipe's data size.")
    metric: str = Field(default="val_bpb", description="Eval metric that ranks recipes: val_bpb (domain: the "
                        "held-out split), text/<file>_bpb (general text, evaluate.text_files), or a downstream score.")
    maximize: bool = Field(default=False, description="Higher metric is better (accuracies); bpb: false.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Significance level of the verdict's permutation test.")

    @field_validator("recipes")
    @classmethod
    def _unique(cls, recipes: list[Recipe]) -> list[Recipe]:
        names = [r.name for r in recipes]
        if not recipes or len(set(names)) != len(names):
            raise ValueError(f"recipes: give at least one, with unique names; got {names}")
        return recipes

    @model_validator(mode="after")
    def _recipes_apply(self) -> AblationConfig:
        for recipe in self.recipes:  # a recipe that overrides the yardstick or names no field fails here, up front
            recipe_config(self.base, recipe)
        return self

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds: give at least one, without repeats; got {seeds}")
        return seeds


def data_stages(cfg: PipelineConfig, label: str) -> ShardSet:
    """crawl (→ mix) → curate → shard of one config; each a cached stage."""
    docs = crawl(cfg.crawl)
    stage_done("crawl", docs, label)
    if cfg.mixture.datasets:
        docs = mix(cfg.mixture, docs)
        stage_done("mix", docs, label)
    curated = curate(cfg.curate, docs)
    stage_done("curate", curated, label)
    shards = shard(cfg.shard, curated)
    stage_done("shard", shards, label)
    return shards


@flow(name="ablate", log_prints=True)
def ablate(cfg: AblationConfig = AblationConfig()) -> AblationSummary:
    base = cfg.base
    recipes = {r.name: recipe_config(base, r) for r in cfg.recipes}
    # samples and safety probes are not compared across arms: scoring them per arm would only cost time
    eval_cfg = base.evaluate.model_copy(update={"prompts": [], "safety_prompts": []})
    with tracked_run(base.tracking, f"{base.name}-ablate", cfg.model_dump(mode="json")) as parent:
        base_shards = data_stages(base, "base")
        tokenize_cfg, init_from = base.tokenize, None
        if base.base is not None:
            imported = import_base(base.base)
            tokenize_cfg = tokenize_cfg.model_copy(update={"tokenizer_file": imported.tokenizer_file})
            init_from = str(imported.dir / imported.checkpoint)
        heldout = tokenize(tokenize_cfg, base_shards)  # the held-out set; trains the one BPE when there is no base
        stage_done("tokenize", heldout, "base")
        shared = tokenize_cfg.model_copy(update={"tokenizer_file": tokenize_cfg.tokenizer_file
                                                 or str(heldout.dir / heldout.tokenizer_file)})
        arms = []
        for recipe in cfg.recipes:
            shards = data_stages(recipes[recipe.name], recipe.name)
            same_data = shards.manifest_sha256 == base_shards.manifest_sha256
            tokens = heldout if same_data else tokenize(shared, shards)
            stage_done("tokenize", tokens, recipe.name)
            for seed in cfg.seeds:
                train_cfg = proxy_train_config(base.train, cfg.token_budget, seed, init_from)
                checkpoint = on_accelerator(train)(train_cfg, tokens)
                stage_done("train", checkpoint, f"{recipe.name}/seed={seed}")
                report = evaluate(eval_cfg, checkpoint, heldout)
                stage_done("evaluate", report, f"{recipe.name}/seed={seed}")
                arms.append(log_arm(base.tracking, parent, recipe, seed, shards, tokens, checkpoint, report))
        summary = write_ablation(base.tracking, parent, base.name, cfg.recipes, arms, cfg.metric, cfg.maximize,
                                 cfg.alpha)
    print(f"ablation: {summary.verdict.text}\n{summary.table}")
    return summary
