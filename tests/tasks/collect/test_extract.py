"""extract_page on tiny pages: charset handling, binary refusal, robots meta, links/feeds, malformed HTML."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from fault_site import SENTENCES, article

from tasks.collect.extract import decode_html, doc_row, extract_page, looks_binary, write_docs
from tasks.core.schema import DOC_SCHEMA


def test_valid_utf8_wins_over_a_wrong_declared_charset():
    body = "<p>Café naïve, crème brûlée</p>".encode()
    assert decode_html(body, "text/html; charset=iso-8859-1") == "<p>Café naïve, crème brûlée</p>"


def test_declared_charset_used_when_the_bytes_are_not_utf8():
    body = "<meta charset='windows-1252'><p>Café – déjà vu</p>".encode("cp1252")
    assert "Café – déjà vu" in decode_html(body, "text/html")
    assert "Grüße" in decode_html("<p>Grüße</p>".encode("latin-1"), "text/html; charset=ISO-8859-1")


def test_binary_payloads_are_recognised():
    assert looks_binary(b"\x89PNG\r\n\x1a\n" + bytes(300))
    assert looks_binary(bytes(range(256)) * 4)
    assert not looks_binary(article("Plain", 0).encode())
    assert extract_page(b"%PDF-1.7 ...", "http://x.test/a").skip == "binary_content"


def test_extracts_text_title_links_feeds_and_language_hint():
    head = '<link rel="alternate" type="application/rss+xml" href="/feed.xml">'
    html = article("River Town", 0, links=["/a", "b.html#frag", "#top", "mailto:x@y.z"], head=head)
    page = extract_page(html.encode(), "http://site.test/dir/index.html")
    assert page.skip == ""
    assert page.title == "River Town"
    assert SENTENCES[0] in page.text and "(River Town, 3)" in page.text
    assert "http://site.test/a" in page.links and "http://site.test/dir/b.html" in page.links
    assert not any("#" in link for link in page.links)
    assert page.feeds == ["http://site.test/feed.xml"]
    assert page.language_hint == "en"


def test_robots_meta_noindex_and_nofollow_are_honoured():
    noindex = article("Private", 1, links=["/x"], head='<meta name="robots" content="noindex">')
    page = extract_page(noindex.encode(), "http://site.test/")
    assert page.skip == "noindex" and page.text == "" and page.links == ["http://site.test/x"]
    nofollow = article("Closed", 1, links=["/x"], head='<meta name="ROBOTS" content="nofollow">')
    page = extract_page(nofollow.encode(), "http://site.test/")
    assert page.skip == "" and page.links == [] and page.nofollow
    header = extract_page(article("H", 1).encode(), "http://site.test/", robots_header="noindex, nofollow")
    assert header.skip == "noindex"


def test_malformed_html_still_yields_its_text():
    broken = ("<html><head><title>Broken</title><body><div><p>" + " ".join(SENTENCES) +
              "<p><b>unclosed <i>tags " + " ".join(SENTENCES[::-1]) + "</div></span></table>")
    page = extract_page(broken.encode(), "http://site.test/broken")
    assert page.skip == ""
    assert SENTENCES[2] in page.text and "unclosed" in page.text


def test_doc_rows_match_the_documented_schema(tmp_path: Path):
    page = extract_page(article("Schema", 2).encode(), "http://site.test/s")
    row = doc_row(page, url="http://site.test/s", domain="site.test", fetch_time="2024-01-01T00:00:00Z",
                  http_status=200, content_hash="ab" * 32, warc_file=None, warc_record_id=None)
    write_docs([row], tmp_path / "docs_00000.parquet")
    table = pq.read_table(tmp_path / "docs_00000.parquet")
    assert table.schema.equals(DOC_SCHEMA)
    assert table.column("title").to_pylist() == ["Schema"]
    assert not list(tmp_path.glob(".*tmp"))
