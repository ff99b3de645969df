"""Chat fine-tuning: base model → SFT conversations → SFT → evaluate → register as a separate chat model.

The base is a registry alias (`models:/lmforge@champion`, followed back to its checkpoint, token data and curated
shards through `tasks.registry.lineage`) or a checkpoint/stage directory. The SFT data is built from the base's curated
shards, the team's seed set and the user's files (`tasks.finetune.sft_data`). The fine-tuned checkpoint is evaluated on the
base's held-out split, so chat versions compare with each other on the same bytes, and registered under its own
name (`lmforge-chat` by default) through the same promotion gate as the base model.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from infra.servers import on_accelerator
from tasks.core.artifacts import ModelVersionRef
from tasks.core.report import track_stage, tracked_run
from tasks.core.tracking import TrackingConfig
from tasks.evaluate.evaluate import EvalConfig, evaluate
from tasks.finetune.sft import SFTConfig, resolve_sft_base, sft
from tasks.finetune.sft_data import SFTDataConfig, sft_data
from tasks.registry.register import RegisterConfig, register

# Sample questions, each asked as a user turn of the chat template (EvalConfig.chat_prompts: role tokens by id).
CHAT_PROMPTS = ["What is Debian?", "How do I read a JSON file in Python?", "Who are you?"]


def chat_eval_config() -> EvalConfig:
    return EvalConfig(prompts=list(CHAT_PROMPTS), chat_prompts=True)


def chat_registry_config() -> RegisterConfig:
    return RegisterConfig(
        model_name="lmforge-chat",
        intended_use="Research and education: a small chat model fine-tuned on documentation Q&A; not for advice.",
    )


class FinetuneConfig(BaseModel):
    """Everything one fine-tuning run needs (the Prefect form of the `finetune` deployment)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="finetune", description="Names the MLflow run.")
    base: str = Field(default="models:/lmforge@champion", description="models:/name@alias, or a checkpoint dir.")
    tokens_dir: str | None = Field(
        default=None, description="Tokenize stage dir whose val split is the eval set; None = the base's own."
    )
    data: SFTDataConfig = Field(default_factory=SFTDataConfig, description="SFT conversations: sources, scrubbing.")
    sft: SFTConfig = Field(default_factory=SFTConfig, description="Fine-tuning: steps, batch, lr.")
    evaluate: EvalConfig = Field(default_factory=chat_eval_config, description="Evaluation of the chat model.")
    registry: RegisterConfig = Field(default_factory=chat_registry_config, description="Chat model registry + gate.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking server.")


@flow(name="finetune", log_prints=True)
def finetune(cfg: FinetuneConfig = FinetuneConfig()) -> ModelVersionRef:  # noqa: B008 (the Prefect form default)
    base = resolve_sft_base(cfg.base, cfg.tracking, cfg.tokens_dir)
    if base.tokens is None:
        raise ValueError(f"finetune: no token data found for base {cfg.base}; set tokens_dir to a tokenize stage "
                         "dir (its val split is the eval set)")
    with tracked_run(cfg.tracking, cfg.name, cfg.model_dump(mode="json")) as run_id:
        track_stage(cfg.tracking, run_id, "tokenize", base.tokens)
        conversations = sft_data(cfg.data, base.shards)
        track_stage(cfg.tracking, run_id, "sft-data", conversations)
        checkpoint = on_accelerator(sft)(cfg.sft, base.checkpoint, conversations)
        track_stage(cfg.tracking, run_id, "sft", checkpoint)
        report = evaluate(cfg.evaluate, checkpoint, base.tokens)
        track_stage(cfg.tracking, run_id, "evaluate", report)
        version = register(cfg.registry, cfg.tracking, run_id, checkpoint, report)
    print(f"finetune: {base.source} → {version.model_uri} ({version.alias}); {conversations.n_train} conversations")
    return version
