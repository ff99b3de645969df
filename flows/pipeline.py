"""The whole DAG: crawl (→ mix) → curate → shard → tokenize → train → evaluate → register, as one Prefect flow.

Composition only: each stage is a task from `tasks/`, handed the previous stage's ref. Finished stages are skipped
on a rerun (their directory already holds a manifest), so a failed run picks up where it stopped. With `cfg.base`
the model starts from open weights: import → tokenize with its tokenizer → evaluate the base → continued
pretraining → (SFT) → evaluate → register, gated against the base (domain better, general text not forgotten);
the base is registered too (`<model_name>-base`), so lineage runs base → adapted model.
"""

from __future__ import annotations

from prefect import flow

from flows.config import PipelineConfig
from flows.presets import tiny_cpu
from infra.servers import on_accelerator
from tasks.collect.crawl import crawl
from tasks.collect.mixture import mix
from tasks.core.report import PipelineSummary, summarize, track_stage, tracked_run
from tasks.curate.curate import curate
from tasks.evaluate.evaluate import evaluate
from tasks.finetune.sft import sft
from tasks.finetune.sft_data import sft_data
from tasks.pretrained.importer import import_base
from tasks.registry.register import register
from tasks.serve.ask import ask
from tasks.shard.shard import shard
from tasks.tokenize.tokenize import tokenize
from tasks.train.train import train

@flow(name="pipeline", log_prints=True)
def pipeline(cfg: PipelineConfig = tiny_cpu()) -> PipelineSummary:
    with tracked_run(cfg.tracking, cfg.name, cfg.model_dump(mode="json")) as run_id:
        docs = crawl(cfg.crawl)
        track_stage(cfg.tracking, run_id, "crawl", docs)
        mixed = docs
        if cfg.mixture.datasets:
            mixed = mix(cfg.mixture, docs)
            track_stage(cfg.tracking, run_id, "mix", mixed)
        curated = curate(cfg.curate, mixed)
        track_stage(cfg.tracking, run_id, "curate", curated)
        shards = shard(cfg.shard, curated)
        track_stage(cfg.tracking, run_id, "shard", shards)
        tokenize_cfg, train_cfg, base_report = cfg.tokenize, cfg.train, None
        if cfg.base is not None:
            base = import_base(cfg.base)
            track_stage(cfg.tracking, run_id, "import", base)
            tokenize_cfg = tokenize_cfg.model_copy(update={"tokenizer_file": base.tokenizer_file})
            train_cfg = train_cfg.model_copy(update={"init_from": str(base.dir / base.checkpoint)})
        tokens = tokenize(tokenize_cfg, shards)
        track_stage(cfg.tracking, run_id, "tokenize", tokens)
        if cfg.base is not None:
            base_report = evaluate(cfg.evaluate, base, tokens)
            track_stage(cfg.tracking, run_id, "evaluate-base", base_report)
            base_registry = cfg.registry.model_copy(update={"model_name": f"{cfg.registry.model_name}-base",
                                                            "intended_use": "The imported base model, as published."})
            register(base_registry, cfg.tracking, run_id, base, base_report)
        trained = on_accelerator(train)(train_cfg, tokens, tracking=(cfg.tracking, run_id))
        track_stage(cfg.tracking, run_id, "train", trained)
        checkpoint, tuned = trained, None
        if cfg.sft is not None:
            conversations = sft_data(cfg.sft_data, shards)
            track_stage(cfg.tracking, run_id, "sft-data", conversations)
            checkpoint = tuned = on_accelerator(sft)(cfg.sft, trained, conversations)
            track_stage(cfg.tracking, run_id, "sft", tuned)
        report = evaluate(cfg.evaluate, checkpoint, tokens)
        track_stage(cfg.tracking, run_id, "evaluate", report)
        version = register(cfg.registry, cfg.tracking, run_id, checkpoint, report, base_report)
        summary = summarize(cfg.tracking, run_id, docs, curated, shards, tokens, trained, report, version,
                            base_report, sft=tuned)
        if cfg.questions:
            summary = summary.model_copy(update={"answers": ask(version.model_uri, cfg.questions, cfg.tracking)})
    return summary
