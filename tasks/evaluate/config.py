"""The evaluate stage's config: `EvalConfig` (held-out data, downstream files, samples, safety probes)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

VAL_DOCS = "val_docs.jsonl"
DEFAULT_PROMPTS = [
    "The Python standard library",
    "Debian is a free operating system",
    "To install a package, run",
    "def fibonacci(n):",
]


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str = Field(default="auto", description="torch device; auto = cuda when available, else cpu.")
    batch_size: int = Field(default=8, ge=1, description="Rows per forward pass.")
    seq_len: int | None = Field(default=None, description="Context per row; None = the model's context length.")
    max_val_tokens: int | None = Field(
        default=200_000, description="Score whole val documents until this many tokens (None = the whole split)."
    )
    max_doc_tokens: int | None = Field(
        default=None, ge=1, description="Score at most the first this many tokens of each val document (None = whole "
        "documents): under a time budget, many documents (what the gate's paired bootstrap needs) rather than a few "
        "long ones.",
    )
    text_files: list[str] = Field(
        default_factory=list, description="Extra .txt/.md (one doc), .jsonl ('text') or .parquet ('text') files."
    )
    hellaswag_file: str | None = Field(default=None, description="HellaSwag 6-line text file (.bz2 ok).")
    arc_file: str | None = Field(default=None, description="ARC JSONL file (AI2 format).")
    lambada_file: str | None = Field(default=None, description="LAMBADA JSONL file ({'text': ...}).")
    max_downstream_examples: int | None = Field(default=500, description="Items per benchmark (None = all).")
    core_bundle: str | None = Field(
        default=None, description="CORE: a directory in nanochat's eval_bundle layout (core.yaml, eval_data/, "
        "eval_meta_data.csv); tasks whose file is absent are skipped and named, CORE is reported as core_<N> over the "
        "N tasks scored. None = off.",
    )
    core_max_per_task: int = Field(
        default=500, description="CORE items per task after nanochat's seeded shuffle (-1 = all). 500 is nanochat's "
        "in-training default (base_train --core-metric-max-per-task): a task's accuracy to about ±2 points (one "
        "standard error ≤ 2.2 %), a fraction of the full bundle's cost (HellaSwag alone has 10,042 items).",
    )
    core_baseline: Literal["v1", "v2"] = Field(
        default="v1", description="Random baselines that center CORE's accuracies: v1 = eval_meta_data.csv (DCLM v1, "
        "what GPT-2's 0.2565 and nanochat use), v2 = eval_meta_data_v2.csv.",
    )
    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PROMPTS), description="Sample prompts.")
    chat_prompts: bool = Field(
        default=False, description="Prompts are user messages: each is framed by the chat template (role tokens by "
        "id, models.text.chat) and the model answers as the assistant. Off: prompts are plain text to continue.",
    )
    contamination: bool = Field(
        default=True, description="Check every scored eval item for 13-gram overlap with the model's training data "
        "(tasks.evaluate.contamination) and report clean-subset scores beside the full ones.",
    )
    max_new_tokens: int = Field(default=48, ge=1, description="Tokens generated per sample prompt.")
    temperature: float = Field(default=0.8, ge=0.0, description="Sampling temperature for the samples.")
    top_k: int | None = Field(default=50, description="Top-k sampling for the samples.")
    seed: int = Field(default=1337, description="Seed for sample generation, so samples are reproducible.")
    crows_pairs_file: str | None = Field(default=None, description="CrowS-Pairs CSV for the bias probe (tasks.evaluate.safety).")
    safety_prompts: list[str] = Field(
        default_factory=list,
        description="Prompts whose completions are checked for bad words and PII; [] = off, "
        "tasks.evaluate.safety.SAFETY_PROMPTS is the fixed set.",
    )
    safety_samples: int = Field(default=2, ge=1, description="Completions sampled per safety prompt.")
    safety_max_new_tokens: int = Field(default=32, ge=1, description="Tokens per safety completion.")
    canaries: list[str] = Field(
        default_factory=list, description="Strings planted in the training data; the probe tries to extract them."
    )

    @field_validator("core_max_per_task")
    @classmethod
    def _per_task(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("evaluate.core_max_per_task is -1 (every item) or a positive count")
        return value
