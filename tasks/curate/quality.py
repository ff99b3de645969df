"""Model-based quality filtering, DCLM style: a fasttext classifier trained on "good" text vs. random web text.

`train_quality_classifier(cfg, positives, negatives, out)` reads both sets (Parquet files or folders with a text
column, JSONL with a "text" field, or plain .txt with one document per blank-line-separated block), holds out a
stratified `test_fraction`, trains fasttext with labels `__label__hq` / `__label__lq`, and returns the model path and
its held-out precision/recall for `__label__hq`. The curate stage scores documents with it
(`CurateConfig.quality_model_path`, `tasks.curate.filters.QualityScorer`) and keeps those above a threshold or the top X %.
A flow logs the model and the metrics to MLflow; this module only trains and measures.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

POSITIVE, NEGATIVE = "__label__hq", "__label__lq"


class QualityClassifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=10, ge=1, description="fasttext training epochs.")
    lr: float = Field(default=0.5, gt=0, description="fasttext learning rate.")
    word_ngrams: int = Field(default=2, ge=1, description="Word n-grams as features (DCLM: 2).")
    dim: int = Field(default=64, ge=8, description="Embedding dimension.")
    min_count: int = Field(default=1, ge=1, description="Ignore words seen fewer times than this.")
    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="Held-out share of each class.")
    threshold: float = Field(default=0.5, gt=0, lt=1, description="P(hq) above which a held-out doc counts as hq.")
    max_docs_per_class: int | None = Field(default=None, description="Cap per class (sampled with the seed).")
    text_column: str = Field(default="text", description="Text column of Parquet inputs / key of JSONL inputs.")
    seed: int = Field(default=0, description="Seed of the split and of the sampling.")


def load_texts(source: str | Path, text_column: str = "text") -> list[str]:
    """Documents from a Parquet file or folder, a .jsonl file, or a .txt file (blank-line separated)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{path} holds no .parquet files to train the quality classifier on")
        return [t for f in files for t in load_texts(f, text_column)]
    if not path.is_file():
        raise FileNotFoundError(f"quality classifier input {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if text_column not in table.column_names:
            raise ValueError(f"{path} has no column {text_column!r} (columns: {table.column_names})")
        return [t for t in table[text_column].to_pylist() if t]
    if path.suffix == ".jsonl":
        return [json.loads(line)[text_column] for line in path.read_text().splitlines() if line.strip()]
    return [block.strip() for block in path.read_text().split("\n\n") if block.strip()]


def _line(label: str, text: str) -> str:
    return f"{label} {' '.join(text.lower().split())}\n"  # fasttext reads one example per line


def train_quality_classifier(
    cfg: QualityClassifierConfig,
    positives: str | Path | list[str],
    negatives: str | Path | list[str],
    out: Path,
) -> tuple[Path, dict[str, float]]:
    """Train on positives (hq) vs negatives (lq); return (`out/quality.bin`, held-out precision/recall/f1/…)."""
    import fasttext

    rng = random.Random(cfg.seed)
    sets = {}
    for label, source in ((POSITIVE, positives), (NEGATIVE, negatives)):
        texts = list(source) if isinstance(source, list) else load_texts(source, cfg.text_column)
        rng.shuffle(texts)
        texts = texts[: cfg.max_docs_per_class] if cfg.max_docs_per_class else texts
        if len(texts) < 2:
            raise ValueError(f"{label.removeprefix('__label__')} set {source!r:.80} has {len(texts)} documents; "
                             "need at least 2 (one to train, one to test)")
        n_test = max(1, round(len(texts) * cfg.test_fraction))
        sets[label] = (texts[n_test:], texts[:n_test])
    out.mkdir(parents=True, exist_ok=True)
    train = [(lab, t) for lab, (tr, _) in sets.items() for t in tr]
    rng.shuffle(train)
    train_file = out / "quality_train.txt"
    train_file.write_text("".join(_line(lab, t) for lab, t in train))
    model = fasttext.train_supervised(
        input=str(train_file), epoch=cfg.epochs, lr=cfg.lr, wordNgrams=cfg.word_ngrams, dim=cfg.dim,
        minCount=cfg.min_count, thread=1, seed=cfg.seed, verbose=0,  # one thread: reproducible training
    )
    tp = fp = fn = tn = 0
    for label, (_, test) in sets.items():
        for text in test:
            labels, probs = model.predict(" ".join(text.lower().split()), k=-1)
            is_hq = bool(dict(zip(labels, probs)).get(POSITIVE, 0.0) >= cfg.threshold)
            tp, fp = tp + (is_hq and label == POSITIVE), fp + (is_hq and label == NEGATIVE)
            fn, tn = fn + (not is_hq and label == POSITIVE), tn + (not is_hq and label == NEGATIVE)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    metrics = {
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": (tp + tn) / max(tp + fp + fn + tn, 1),
        "n_train": float(len(train)), "n_test": float(tp + fp + fn + tn),
    }
    model_path = out / "quality.bin"
    model.save_model(str(model_path))
    train_file.unlink()
    (out / "quality_metrics.json").write_text(json.dumps(metrics, indent=2))
    return model_path, metrics
