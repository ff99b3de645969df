"""Each custom curation step on tiny inline documents: URL blocklist, language ID, bad words, toxicity, PII,
quality scoring, the shard-row adapter, and that a failing datatrove worker surfaces its error."""

from __future__ import annotations

import pyarrow as pa
import pytest
from curate_data import FRENCH, GERMAN, english
from datatrove.data import Document

from tasks.core.pii import PLACEHOLDERS, PIIScrubber, luhn_ok, scrub_pii
from tasks.core.schema import SHARD_SCHEMA
from tasks.curate.filters import (
    BadWordDensityFilter,
    LanguageIDFilter,
    PackageC4BadWordsFilter,
    QualityScorer,
    ScoreThresholdFilter,
    URLBlocklistFilter,
    shard_row_adapter,
)
from tasks.curate.quality import QualityClassifierConfig, train_quality_classifier


def doc(text: str, url: str = "http://site.test/a.html", **meta) -> Document:
    return Document(text=text, id=url, metadata={"url": url, **meta})


def test_url_blocklist(tmp_path):
    blocklist = tmp_path / "block.txt"
    blocklist.write_text("# blocked\nbad.test\nhttp://site.test/exact.html\n")
    f = URLBlocklistFilter([str(blocklist)])
    assert f.filter(doc("x", "http://www.bad.test/page")) == (False, "domain")
    assert f.filter(doc("x", "http://site.test/exact.html")) == (False, "url")
    assert f.filter(doc("x", "http://site.test/free-porn-videos.html"))[1] == "hard_blacklisted"
    assert f.filter(doc("x", "http://site.test/notbad.test/ok.html")) is True
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        URLBlocklistFilter([str(tmp_path / "nope.txt")]).filter(doc("x"))


def test_language_id_keeps_english_and_names_the_dropped_language():
    f = LanguageIDFilter(["en"], threshold=0.65)
    english_doc, german_doc = doc(english(1)), doc(GERMAN)
    assert f.filter(english_doc) is True
    assert english_doc.metadata["language"] == "en" and english_doc.metadata["language_score"] > 0.65
    assert f.filter(german_doc) == (False, "lang_de")
    assert LanguageIDFilter([], threshold=0.5).filter(doc(FRENCH)) is True  # no language list: keep all


def test_c4_badwords_uses_the_packaged_list():
    f = PackageC4BadWordsFilter()
    assert f.filter(doc(english(2) + " What a shit show.", language="en")) == (False, "document_removed_with_badwords")
    assert f.filter(doc(english(2), language="en")) is True
    assert f.filter(doc("Das ist shit.", language="de")) is True  # no German list packaged: kept, counted


def test_badword_density_filter():
    f = BadWordDensityFilter(max_ratio=0.01)
    toxic = doc(english(3) + " fuck this shit, you cunt. fuck.")
    assert f.filter(toxic) == (False, "badword_density") and toxic.metadata["badword_ratio"] > 0.01
    assert f.filter(doc(english(3) + " Oh shit.")) is True  # a single word is not toxicity
    assert f.filter(doc("len(x) returns the length; meth and kill are commands. " * 5)) is True  # allowlisted


@pytest.mark.parametrize(
    "text, kind",
    [
        ("write to jane.roe@corp-mail.com today", "email"),
        ("the server 8.8.4.4 answered", "ip"),
        ("call +44 20 7946 0958 now", "phone"),
        ("or (415) 555-0132 after six", "phone"),
        ("card 4111 1111 1111 1111 expired", "credit_card"),
        ("card 5500-0000-0000-0004 expired", "credit_card"),
    ],
)
def test_pii_each_kind_is_replaced(text, kind):
    scrubbed, counts = scrub_pii(text)
    assert counts[kind] == 1 and sum(counts.values()) == 1, (scrubbed, counts)
    assert PLACEHOLDERS[kind] in scrubbed


def test_pii_leaves_lookalikes_alone():
    text = "Python 3.11.2 from 2023-01-15 listens on 127.0.0.1 and 192.0.2.10; order 4111111111111112; PEP 8."
    assert scrub_pii(text) == (text, dict.fromkeys(PLACEHOLDERS, 0))
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_pii_scrubber_step_counts_per_kind():
    step = PIIScrubber()
    docs = list(step.run(iter([doc("mail a@b.org and c@d.org"), doc("no pii here")])))
    assert docs[0].text == "mail <EMAIL> and <EMAIL>" and docs[1].text == "no pii here"
    assert step.stats["pii_email"].total == 2 and step.stats["docs_with_pii"].total == 1


def test_quality_classifier_trains_scores_and_filters(tmp_path):
    import random

    rng = random.Random(0)
    spam = "click here buy now login cart menu home share cookie subscribe deal free win".split()
    negatives = [" ".join(rng.choice(spam) for _ in range(60)) for _ in range(30)]
    model, metrics = train_quality_classifier(QualityClassifierConfig(), [english(i) for i in range(30)],
                                              negatives, tmp_path)
    assert model.exists() and metrics["n_test"] == 12 and metrics["precision"] >= 0.8 and metrics["recall"] >= 0.8
    scorer = QualityScorer(str(model))
    good, bad = doc(english(500)), doc(" ".join(rng.choice(spam) for _ in range(60)))
    list(scorer.run(iter([good, bad])))
    assert good.metadata["quality_score"] > 0.5 > bad.metadata["quality_score"]
    keep = ScoreThresholdFilter(0.5)
    assert keep.filter(good) is True and keep.filter(bad) == (False, "below_threshold")


def test_shard_row_adapter_matches_schema():
    d = doc("Hello world, again.", "http://site.test/x", fetch_time="2024-05-01T12:00:00Z", language="en",
            language_score=0.9, minhash_cluster_size=3, warc_file="a.warc.gz", warc_record_id="<urn:1>")
    row = shard_row_adapter(None, d)
    table = pa.Table.from_pylist([row], schema=SHARD_SCHEMA)
    assert table.schema == SHARD_SCHEMA and row["token_count"] == 3 and row["domain"] == "site.test"
    assert row["quality_score"] is None and row["minhash_cluster_size"] == 3
