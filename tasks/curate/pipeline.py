"""The datatrove pipelines of the curate stage, and the per-step stats they report (see `tasks.curate.curate`).

Each pipeline reads what the previous one wrote under `out/work/`, so dedup indices always refer to the position
of a document in one file: `work/input/` → filter → `work/filtered/` → exact-dedup filter → `work/deduped/` →
MinHash filter + PII → `out/docs/`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core import progress
from tasks.core.executors import run_pipeline
from tasks.curate.config import HEURISTIC_STEPS, CurateConfig, heuristic_kwargs


def rejects(out: Path, step: str):
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    return JsonlWriter(str(out / "removed" / step), output_filename="${rank}.jsonl.gz")


def ensure_rank_files(folder: Path, n: int) -> None:
    """A rank that kept nothing writes no file; an empty one keeps file i ↔ rank i for the dedup stages."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"{i:05d}.jsonl.gz"
        if not path.exists():
            with gzip.open(path, "wb"):
                pass


def _exact_content(doc) -> bytes:
    return doc.text.encode()  # xxhash wants bytes


def _quality_threshold(cfg: CurateConfig, filtered: Path) -> float:
    """The fixed threshold, or the score quantile that keeps the top `quality_top_fraction` of filtered docs."""
    if cfg.quality_top_fraction is None:
        return cfg.quality_threshold
    scores = []
    for path in sorted(filtered.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            scores += [json.loads(line)["metadata"].get("quality_score", 0.0) for line in f]
    return float(np.quantile(scores, 1 - cfg.quality_top_fraction)) if scores else 0.0


def build_and_run(cfg: CurateConfig, out: Path, n_in: int, index_root: Path) -> dict[str, Any]:
    from datatrove.pipeline.dedup import exact_dedup as ex
    from datatrove.pipeline.dedup import minhash as mh
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.readers import JsonlReader, ParquetReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.pipeline.writers.parquet import ParquetWriter
    from datatrove.utils.hashing import HashConfig

    from tasks.core.pii import PIIScrubber
    from tasks.core.schema import SHARD_SCHEMA
    from tasks.curate import filters as f

    work, logs, T = out / "work", out / "logs", cfg.tasks
    common = {"tasks": T, "workers": cfg.workers, "backend": cfg.executor,
              "slurm_partition": cfg.slurm_partition, "slurm_time": cfg.slurm_time}
    steps_out: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}

    def run(name: str, labelled: list[tuple[str | None, Any]], **kw) -> list[dict[str, float]]:
        kept = f"{steps_out[next(reversed(steps_out))]['docs_out']:,.0f} docs so far · " if steps_out else ""
        progress.update("curate", note=f"{kept}running datatrove pipeline {len(seconds) + 1} ({name})")
        stats = run_pipeline([s for _, s in labelled], name=name, logging_dir=logs / name, **{**common, **kw})
        seconds[name] = round(sum(s.get("seconds", 0.0) for s in stats), 3)
        for (label, _), st in zip(labelled, stats):
            if label:  # manifests sort keys, so keep the pipeline order explicitly
                steps_out[label] = {**_step_stats(st), "position": len(steps_out)}
        return stats

    def jsonl(folder: str):
        return JsonlWriter(str(work / folder), output_filename="${rank}.jsonl.gz")

    # 1. filters (the quality model only scores here; its threshold needs every score when it is a top fraction)
    heuristics = {
        "gopher_repetition": GopherRepetitionFilter, "gopher_quality": GopherQualityFilter,
        "c4_quality": C4QualityFilter, "fineweb_quality": FineWebQualityFilter,
    }
    ex_cfg = ex.ExactDedupConfig(content_getter=_exact_content, hash_config=HashConfig(precision=64))
    p1: list[tuple[str | None, Any]] = [
        (None, ParquetReader(str(work / "input"), glob_pattern="*.parquet")),
        ("input", f.TokenCounter()),
    ]
    if cfg.decontaminate:  # first: every page leaking an eval item lands in removed/decontaminate/, whatever else it is
        p1.append(("decontaminate", f.DecontaminationFilter(cfg.decontaminate,
                                                            exclusion_writer=rejects(out, "decontaminate"))))
    p1 += [
        ("url", f.URLBlocklistFilter(cfg.url_blocklist_files, cfg.url_builtin_domains,
                                     exclusion_writer=rejects(out, "url"))),
        ("language", f.LanguageIDFilter(cfg.languages, cfg.language_threshold, cfg.lid_model_path,
                                        exclusion_writer=rejects(out, "language"))),
    ]
    for step in HEURISTIC_STEPS[:3]:
        p1.append((step, heuristics[step](exclusion_writer=rejects(out, step), **heuristic_kwargs(cfg, step))))
    if cfg.c4_badwords:
        p1.append(("c4_badwords", f.PackageC4BadWordsFilter(exclusion_writer=rejects(out, "c4_badwords"))))
    step = "fineweb_quality"
    p1.append((step, heuristics[step](exclusion_writer=rejects(out, step), **heuristic_kwargs(cfg, step))))
    p1.append(("toxicity", f.BadWordDensityFilter(cfg.toxicity_max_ratio, exclusion_writer=rejects(out, "toxicity"))))
    if cfg.quality_model_path:
        p1.append((None, f.QualityScorer(cfg.quality_model_path)))
    p1.append((None, jsonl("filtered")))
    if cfg.exact_dedup:
        p1.append((None, ex.ExactDedupSignature(str(work / "exact_sigs"), config=ex_cfg)))
    run("filter", p1)
    ensure_rank_files(work / "filtered", T)

    # 2-3. exact dedup, quality threshold, MinHash signatures
    if cfg.exact_dedup:
        run("exact_find", [(None, ex.ExactFindDedups(str(work / "exact_sigs"), str(work / "exact_dups"), ex_cfg))],
            tasks=1, workers=1)
    p3: list[tuple[str | None, Any]] = [(None, JsonlReader(str(work / "filtered"), glob_pattern="*.jsonl.gz"))]
    if cfg.exact_dedup:
        p3.append(("exact_dedup", ex.ExactDedupFilter(str(work / "exact_dups"), ex_cfg,
                                                      exclusion_writer=rejects(out, "exact_dedup"))))
    threshold = None
    if cfg.quality_model_path:
        threshold = _quality_threshold(cfg, work / "filtered")
        p3.append(("quality", f.ScoreThresholdFilter(threshold, exclusion_writer=rejects(out, "quality"))))
    p3.append((None, jsonl("deduped")))
    mh_cfg = mh.MinhashConfig(n_grams=cfg.minhash_ngrams, num_buckets=cfg.minhash_buckets,
                              hashes_per_bucket=cfg.minhash_hashes_per_bucket, hash_config=HashConfig(precision=64))
    if cfg.minhash:
        p3.append((None, mh.MinhashDedupSignature(str(work / "mh_sigs"), config=mh_cfg)))
    run("exact_filter", p3)
    ensure_rank_files(work / "deduped", T)

    # 4-5. MinHash buckets (optionally against the cross-run index) and clusters
    index_matches = 0.0
    if cfg.minhash:
        index = index_root / f"minhash_{mh_cfg}" if cfg.cross_run_dedup else None
        buckets = mh.MinhashDedupBuckets(
            str(work / "mh_sigs"), str(work / "mh_buckets"), index_folder=str(index) if index else None,
            config=mh_cfg, only_dedup_in_index=False, create_index_name=out.name if index else None)
        index_matches = run("minhash_buckets", [(None, buckets)], tasks=cfg.minhash_buckets,
                            workers=cfg.bucket_workers)[0].get("index_match", 0.0)
        run("minhash_cluster", [(None, mh.MinhashDedupCluster(str(work / "mh_buckets"), str(work / "mh_clusters"),
                                                             config=mh_cfg, save_cluster_size=True))],
            tasks=1, workers=1)
        # MinhashDedupFilter skips a rank without a `.remove` file (nothing to drop) before it reads the rank's
        # `.sizes`, so a kept document there would lose its cluster size, and fails a rank with a `.remove` but no
        # `.sizes`: give every rank both, empty where the clusters left nothing.
        (work / "mh_clusters").mkdir(parents=True, exist_ok=True)
        for rank in range(T):
            for kind in ("remove", "sizes"):
                (work / "mh_clusters" / f"{rank:06d}.{kind}").touch()

    # 6. MinHash filter, PII, Parquet with the shard columns
    p6: list[tuple[str | None, Any]] = [(None, JsonlReader(str(work / "deduped"), glob_pattern="*.jsonl.gz"))]
    if cfg.minhash:
        p6.append(("minhash_dedup", mh.MinhashDedupFilter(str(work / "mh_clusters"), load_cluster_sizes=True,
                                                          exclusion_writer=rejects(out, "minhash_dedup"))))
    if cfg.pii:
        p6.append(("pii", PIIScrubber(tuple(cfg.pii_kinds), tuple(cfg.pii_regions), cfg.pii_ip_scope)))
    p6.append(("output", f.TokenCounter()))
    p6.append((None, ParquetWriter(str(out / "docs"), output_filename="${rank}.parquet", compression="zstd",
                                       adapter=f.shard_row_adapter, schema=SHARD_SCHEMA, max_file_size=-1,
                                       use_content_defined_chunking=False)))
    run("final", p6)

    docs_out = int(steps_out["output"]["docs_in"])
    return {
        "docs_in": n_in, "docs_out": docs_out, "tokens_in": steps_out["input"].get("tokens", 0.0),
        "tokens_out": steps_out["output"].get("tokens", 0.0), "steps": steps_out, "pipeline_seconds": seconds,
        "minhash_index_matches": index_matches, **({"quality_threshold": threshold} if threshold is not None else {}),
    }


def _step_stats(st: dict[str, float]) -> dict[str, Any]:
    """datatrove counters → docs_in, docs_out, dropped (by reason), tokens, PII counts."""
    docs_in = st.get("total", 0.0)
    dropped = {k.removeprefix("dropped_"): v for k, v in st.items() if k.startswith("dropped_")}
    out: dict[str, Any] = {"docs_in": docs_in, "docs_out": st.get("forwarded", docs_in - st.get("dropped", 0.0))}
    if dropped or "dropped" in st:
        out["dropped"] = {"total": st.get("dropped", 0.0), **dropped}
    for key in ("doc_len_tokens", "tokens", "seconds", "documents_with_badwords", "docs_with_pii"):
        if key in st:
            out["tokens" if key == "doc_len_tokens" else key] = st[key]
    out.update({k: v for k, v in st.items() if k.startswith("pii_")})
    return out
