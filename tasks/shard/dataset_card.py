"""DATASET_CARD.md for a set of shards: what is in it, where it came from, what curation removed, what to watch for.

Written by the shard stage beside the shards from the curate manifest's per-step stats and the shards' own columns.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tasks.core.artifacts import DocSet
from tasks.core.schema import SHARD_SCHEMA

KNOWN_LIMITATIONS = [
    "Language ID is fasttext lid.176: short or code-heavy pages get low scores and mixed-language pages one label.",
    "Heuristic filters (Gopher, C4, FineWeb) were tuned on web prose; the active thresholds are in the curate "
    "config of this run's manifest.",
    "The toxicity filter counts words from a fixed English list (better-profanity, minus an allowlist): it misses "
    "toxicity in other words or languages and can drop benign pages that discuss such words.",
    "PII scrubbing is pattern-based (e-mail, public IPv4, phone, Luhn-valid card numbers): names, street addresses "
    "and IDs in other formats are not removed, and some numbers that look like phones are replaced.",
    "Near-duplicate removal (MinHash) keeps one document per cluster, the first by URL, not necessarily the "
    "original or the best copy.",
    "Licences are only as known from the configuration; check each source's terms before redistribution.",
]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def write_dataset_card(path: Path, cfg: Any, docs: DocSet, stats: dict[str, Any], domains: Counter[str],
                       date_range: tuple[str, str]) -> None:
    """Render the card to `path` (markdown). `cfg` is the ShardConfig; `stats` the shard stage's stats."""
    curate = docs.manifest() if (docs.dir / "manifest.json").exists() else {}
    cstats = curate.get("stats", {})
    steps = cstats.get("steps", {})
    step_rows = []
    for name, st in sorted(steps.items(), key=lambda kv: kv[1].get("position", 0)):
        reasons = ", ".join(f"{k}: {int(v)}" for k, v in st.get("dropped", {}).items() if k != "total")
        step_rows.append([name, int(st.get("docs_in", 0)), int(st.get("docs_out", 0)), reasons or "-"])
    pii = {k.removeprefix("pii_"): int(v) for k, v in steps.get("pii", {}).items() if k.startswith("pii_")}
    # most frequent first, ties by name: not in the order documents came, so the card is a function of the data
    licence_rows = [[d, n, cfg.license_notes.get(d, "unknown")] for d, n in sorted(domains.items(), key=_by_count)]
    lang_rows = [[lang, n] for lang, n in sorted(stats["languages"].items(), key=_by_count)]
    config = curate.get("config") or {}
    mixture = []
    if docs.sources:  # a mixture: each source's share and the files (with sha256) its documents came from
        kept = stats.get("sources", {})
        mixture.append(_table(
            ["source", "kind", "weight", "documents mixed in", "documents after curation", "licence"],
            [[s.name, s.kind, "all" if s.weight is None else s.weight, s.documents, kept.get(s.name, 0), s.license]
             for s in docs.sources]))
        mixture.append("\n".join(f"- `{s.name}`: `{f.path}` sha256 `{f.sha256}`" for s in docs.sources
                                 for f in s.files if s.kind != "crawl"))
    parts = [
        f"# {cfg.card_title}",
        f"{stats['n_docs']} documents, {stats['n_tokens']} whitespace tokens, {stats['n_bytes']} UTF-8 bytes of text "
        f"in {stats['n_shards']} Parquet shard(s) (zstd).",
        "## Sources",
        f"Crawled between {date_range[0] or '?'} and {date_range[1] or '?'} (fetch times, UTC).",
        _table(["domain", "documents", "licence (as known)"], licence_rows),
        *mixture,
        "## Curation",
        f"Documents in: {int(cstats.get('docs_in', 0))}; out: {int(cstats.get('docs_out', stats['n_docs']))}. "
        f"Languages kept: {config.get('languages') or 'all'} (threshold {config.get('language_threshold', '?')}); "
        f"heuristic profile: {config.get('profile', '?')}. Rejected documents are in the curate stage's "
        "`removed/<step>/` folder with their drop reason.",
        _table(["step", "docs in", "docs out", "drop reasons"], step_rows) if step_rows else "(no step stats)",
        f"PII replaced by placeholders: {pii or 'none found'}.",
        "## Languages",
        _table(["language", "documents"], lang_rows),
        "## Schema",
        _table(["column", "type", "nullable"], [[f.name, f.type, f.nullable] for f in SHARD_SCHEMA]),
        "## Known limitations",
        "\n".join(f"- {line}" for line in KNOWN_LIMITATIONS + list(cfg.limitations)),
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n\n".join(parts) + "\n")
    tmp.replace(path)
