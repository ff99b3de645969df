from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tiny_corpus import paragraph

from tasks.core.artifacts import DocSet, load_done
from tasks.curate.quality_stage import QualityTrainConfig, run_quality, texts_by_url


def crawled_docs(root: Path) -> DocSet:
    """Narrative pages (prose) under /tutorial/ and terse reference pages under /c-api/."""
    import random

    rng = random.Random(0)
    urls, texts = [], []
    for i in range(20):
        urls.append(f"http://docs.test/tutorial/page{i}.html")
        texts.append(paragraph(rng, 8))
        urls.append(f"http://docs.test/c-api/func{i}.html")
        texts.append(" ".join(f"PyObject_Call{i}_{j}(PyObject *arg{j}) -> int; NULL on error." for j in range(12)))
    root.mkdir(parents=True)
    pq.write_table(pa.table({"url": urls, "text": texts}), root / "docs.parquet")
    return DocSet(path=str(root), files=["docs.parquet"], n_docs=len(urls))


def test_url_patterns_select_the_sets(tmp_path: Path):
    docs = crawled_docs(tmp_path / "crawl")
    assert len(texts_by_url(docs, ["/tutorial/"])) == 20
    assert len(texts_by_url(docs, ["/c-api/", "genindex"])) == 20


def test_classifier_trained_from_crawl_separates_prose_from_reference(tmp_path: Path):
    docs = crawled_docs(tmp_path / "crawl")
    out = tmp_path / "stage"
    out.mkdir()
    ref = run_quality(QualityTrainConfig(), docs, out)
    assert (out / ref.model_file).exists()
    assert ref.metrics["precision"] == 1.0 and ref.metrics["recall"] == 1.0  # the two styles are trivially apart
    assert load_done(out, type(ref)) == ref
    assert ref.manifest()["stats"]["positives"] == 20
