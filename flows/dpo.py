"""Preference tuning: chat (SFT) model → preference pairs → DPO → evaluate both → register, gated, with lineage.

The starting model is a registry alias (`models:/lmforge-chat@champion` by default) or a checkpoint directory; it
is also DPO's frozen reference. Pairs come from the user's preference files (HH-RLHF or TRL format) and, without
labels, from the SFT conversations (`tasks.finetune.pref_data`: reference answer vs the model's own sample). Both
models are evaluated on the start's held-out text (domain val bpb) and on the held-out pairs
(`tasks.finetune.pref_eval`); the DPO model is registered under its own name (`lmforge-dpo`) through the
registry's gate against its start: held-out preference accuracy must rise, val bpb may not rise by more than
`general_tolerance`; the decision and its reason are version tags either way. The run is tagged with the start's
model version (`lmforge.parent`), so `lineage` leads from the DPO version back to the SFT version.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from flows.finetune import chat_eval_config
from infra.servers import on_accelerator
from tasks.core.artifacts import ModelVersionRef
from tasks.core.report import track_stage, tracked_run
from tasks.core.tracking import TrackingConfig
from tasks.evaluate.evaluate import EvalConfig, evaluate
from tasks.finetune.dpo import DPOConfig, dpo
from tasks.finetune.pref_data import PreferenceDataConfig, preference_data
from tasks.finetune.pref_eval import preference_eval
from tasks.finetune.sft import resolve_sft_base
from tasks.finetune.sft_data import SFTDataConfig, sft_data
from tasks.registry.lineage import record_parent
from tasks.registry.register import RegisterConfig, register


def dpo_registry_config() -> RegisterConfig:
    return RegisterConfig(
        model_name="lmforge-dpo", gate_metric="pref_reward_acc", guard_metrics=[], general_metrics=["val_bpb"],
        general_tolerance=0.05, rescore_champion=False,
        intended_use="Research and education: a small chat model preference-tuned (DPO); not for advice.",
    )


class DPOFinetuneConfig(BaseModel):
    """Everything one preference-tuning run needs (the Prefect form of the `finetune-dpo` deployment)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="finetune-dpo", description="Names the MLflow run.")
    base: str = Field(default="models:/lmforge-chat@champion", description="Start (and reference): models:/name@alias "
                      "or a checkpoint dir.")
    tokens_dir: str | None = Field(
        default=None, description="Tokenize stage dir whose val split is the domain eval set; None = the start's own."
    )
    conversations: SFTDataConfig = Field(
        default_factory=SFTDataConfig, description="SFT conversations the label-free pairs are built from (spin)."
    )
    data: PreferenceDataConfig = Field(default_factory=PreferenceDataConfig, description="Preference pairs.")
    dpo: DPOConfig = Field(default_factory=DPOConfig, description="DPO: beta, steps, lr, LoRA.")
    evaluate: EvalConfig = Field(default_factory=chat_eval_config, description="Domain evaluation of both models.")
    registry: RegisterConfig = Field(default_factory=dpo_registry_config, description="DPO model registry + gate.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking server.")


@flow(name="finetune-dpo", log_prints=True)
def finetune_dpo(cfg: DPOFinetuneConfig = DPOFinetuneConfig()) -> ModelVersionRef:  # noqa: B008 (the form default)
    start = resolve_sft_base(cfg.base, cfg.tracking, cfg.tokens_dir)
    if start.tokens is None:
        raise ValueError(f"finetune-dpo: no token data found for {cfg.base}; set tokens_dir to a tokenize stage dir "
                         "(its val split is the domain eval set)")
    with tracked_run(cfg.tracking, cfg.name, cfg.model_dump(mode="json")) as run_id:
        record_parent(cfg.tracking, run_id, start.model_uri or str(start.checkpoint.dir / start.checkpoint.checkpoint))
        track_stage(cfg.tracking, run_id, "tokenize", start.tokens)
        conversations = sft_data(cfg.conversations, start.shards) if cfg.data.spin else None
        pairs = preference_data(cfg.data, start.checkpoint, conversations)
        track_stage(cfg.tracking, run_id, "preference-data", pairs)
        checkpoint = on_accelerator(dpo)(cfg.dpo, start.checkpoint, pairs)
        track_stage(cfg.tracking, run_id, "dpo", checkpoint)
        start_report = preference_eval(cfg.dpo, start.checkpoint, start.checkpoint, pairs,
                                       evaluate(cfg.evaluate, start.checkpoint, start.tokens))
        track_stage(cfg.tracking, run_id, "evaluate-start", start_report)
        report = preference_eval(cfg.dpo, checkpoint, start.checkpoint, pairs,
                                 evaluate(cfg.evaluate, checkpoint, start.tokens))
        track_stage(cfg.tracking, run_id, "evaluate", report)
        version = register(cfg.registry, cfg.tracking, run_id, checkpoint, report, start_report)
    print(f"finetune-dpo: {cfg.base} → {version.model_uri} ({version.alias}); {pairs.n_train} pairs, "
          f"held-out preference accuracy {start_report.metrics.get('pref_reward_acc')} → "
          f"{report.metrics.get('pref_reward_acc')}")
    return version
