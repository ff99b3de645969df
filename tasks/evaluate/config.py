"""The evaluate stage's config: `EvalConfig` (held-out data, downstream files, samples, safety probes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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
    text_files: list[str] = Field(
        default_factory=list, description="Extra .txt/.md (one doc), .jsonl ('text') or .parquet ('text') files."
    )
    hellaswag_file: str | None = Field(default=None, description="HellaSwag 6-line text file (.bz2 ok).")
    arc_file: str | None = Field(default=None, description="ARC JSONL file (AI2 format).")
    lambada_file: str | None = Field(default=None, description="LAMBADA JSONL file ({'text': ...}).")
    max_downstream_examples: int | None = Field(default=500, description="Items per benchmark (None = all).")
    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PROMPTS), description="Sample prompts.")
    chat_prompts: bool = Field(
        default=False, description="Prompts are user messages: each is framed by the chat template (role tokens by "
        "id, models.chat) and the model answers as the assistant. Off: prompts are plain text to continue.",
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
