"""The quality-classifier stage: choose the positive and negative sets, train the fasttext classifier, measure it.

The sets are the user's files (`positives` / `negatives`: Parquet, JSONL, text) or, by URL pattern, documents of a
crawl: DCLM's idea of curated "good" text against random web text, made from what is at hand. The demo's
documented choice: narrative pages (tutorials, how-tos, FAQ, what's new, the English Debian Reference) are "good";
generated reference and index pages (the C API reference, the general index) are "bad". The trained model feeds
`CurateConfig.quality_model_path`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.artifacts import DocSet, StageRef, finish_stage, load_done, stage_dir
from tasks.curate.quality import QualityClassifierConfig, train_quality_classifier


class QualityTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classifier: QualityClassifierConfig = Field(default_factory=QualityClassifierConfig, description="fasttext.")
    positives: list[str] = Field(default_factory=list, description="Files or folders of good text; empty = by URL.")
    negatives: list[str] = Field(default_factory=list, description="Files or folders of other text; empty = by URL.")
    positive_url_patterns: list[str] = Field(
        default_factory=lambda: ["/tutorial/", "/howto/", "/faq/", "/whatsnew/", ".en.html"],
        description="Crawled documents whose URL contains one of these are positives (when `positives` is empty).",
    )
    negative_url_patterns: list[str] = Field(
        default_factory=lambda: ["/c-api/", "genindex"],
        description="Crawled documents whose URL contains one of these are negatives (when `negatives` is empty).",
    )


class QualityModelRef(StageRef):
    model_file: str = Field(description="fasttext model, relative to `path`.")
    metrics: dict[str, float] = Field(description="Held-out precision, recall, f1, accuracy, n_train, n_test.")


def texts_by_url(docs: DocSet, patterns: list[str]) -> list[str]:
    texts = []
    for name in docs.files:
        table = pq.read_table(docs.dir / name, columns=["url", "text"])
        for url, text in zip(table["url"].to_pylist(), table["text"].to_pylist()):
            if text and any(pattern in url for pattern in patterns):
                texts.append(text)
    return texts


def training_sets(cfg: QualityTrainConfig, docs: DocSet | None) -> tuple[list[str], list[str]]:
    sets = []
    for files, patterns, name in ((cfg.positives, cfg.positive_url_patterns, "positives"),
                                  (cfg.negatives, cfg.negative_url_patterns, "negatives")):
        if files:
            from tasks.curate.quality import load_texts

            sets.append([text for source in files for text in load_texts(source, cfg.classifier.text_column)])
        elif docs is not None:
            sets.append(texts_by_url(docs, patterns))
        else:
            raise ValueError(f"quality: no {name} given and no crawled documents to select them from by URL")
    return sets[0], sets[1]


def run_quality(cfg: QualityTrainConfig, docs: DocSet | None, out: Path) -> QualityModelRef:
    started = time.time()
    positives, negatives = training_sets(cfg, docs)
    model_path, metrics = train_quality_classifier(cfg.classifier, positives, negatives, out)
    ref = QualityModelRef(path=str(out), model_file=model_path.name, metrics=metrics)
    stats = {**metrics, "positives": len(positives), "negatives": len(negatives)}
    return finish_stage(out, ref, config=cfg, entry=run_quality, stats=stats,
                        files=[model_path.name, "quality_metrics.json"], started=started)


@task(name="quality-classifier", retries=1)
def quality_classifier(cfg: QualityTrainConfig, docs: DocSet | None) -> QualityModelRef:
    out = stage_dir("quality", cfg, *([docs] if docs is not None else []), entry=run_quality)
    return load_done(out, QualityModelRef) or run_quality(cfg, docs, out)
