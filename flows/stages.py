"""One flow per stage, so each can be deployed and triggered on its own from the Prefect UI.

A stage flow takes the stage's config and the refs of its inputs (as the pipeline passes them; copy them from an
earlier run's Prefect results or manifests) and returns the stage's ref.
"""

from __future__ import annotations

from prefect import flow

from infra.servers import on_accelerator
from tasks.collect.config import CrawlConfig
from tasks.collect.crawl import crawl
from tasks.collect.mixture import MixtureConfig, mix
from tasks.core.artifacts import CheckpointRef, DocSet, EvalReport, ShardSet, TokenSet
from tasks.curate.config import CurateConfig
from tasks.curate.curate import curate
from tasks.evaluate.evaluate import EvalConfig, evaluate
from tasks.pretrained.importer import ImportConfig, import_base
from tasks.shard.shard import ShardConfig, shard
from tasks.tokenize.tokenize import TokenizeConfig, tokenize
from tasks.train.train import TrainConfig, train


@flow(name="crawl")
def crawl_flow(cfg: CrawlConfig) -> DocSet:
    return crawl(cfg)


@flow(name="mix")
def mix_flow(cfg: MixtureConfig, docs: DocSet) -> DocSet:
    return mix(cfg, docs)


@flow(name="curate")
def curate_flow(cfg: CurateConfig, docs: DocSet) -> DocSet:
    return curate(cfg, docs)


@flow(name="shard")
def shard_flow(cfg: ShardConfig, docs: DocSet) -> ShardSet:
    return shard(cfg, docs)


@flow(name="import")
def import_flow(cfg: ImportConfig) -> CheckpointRef:
    return import_base(cfg)


@flow(name="tokenize")
def tokenize_flow(cfg: TokenizeConfig, shards: ShardSet) -> TokenSet:
    return tokenize(cfg, shards)


@flow(name="train")
def train_flow(cfg: TrainConfig, tokens: TokenSet) -> CheckpointRef:
    return on_accelerator(train)(cfg, tokens)


@flow(name="evaluate")
def evaluate_flow(cfg: EvalConfig, checkpoint: CheckpointRef, tokens: TokenSet) -> EvalReport:
    return evaluate(cfg, checkpoint, tokens)
