"""extract_page on tiny pages: charset handling, binary refusal, robots meta, links/feeds, malformed HTML."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
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


@pytest.mark.parametrize(
    "label, text, codec",
    [
        ("ISO-8859-1", "“Quoted” — it’s déjà vu…", "cp1252"),  # cp1252's 0x80-0x9F, which latin-1 reads as controls
        ("us-ascii", "“Quoted” — naïve", "cp1252"),
        ("ISO-8859-9", "“Şu” — İstanbul", "cp1254"),
        ("Shift_JIS", "①番 ～ 髙橋", "cp932"),  # Windows' additions to Shift_JIS
        ("GB2312", "欢迎 € 锘", "gb18030"),
        ("EUC-KR", "똠방각하", "cp949"),
    ],
)
def test_declared_charsets_decode_as_browsers_do(label, text, codec):
    body = f"<p>{text}</p>".encode(codec)
    assert decode_html(body, f"text/html; charset={label}") == f"<p>{text}</p>"


def test_a_byte_order_mark_overrides_the_declared_charset():
    page = "<meta charset='iso-8859-1'><p>Grüße “x”</p>"
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        assert decode_html(bom + page.encode(codec), "text/html; charset=windows-1252") == page
    article_page = article("Grüße", 0)
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        extracted = extract_page(bom + article_page.encode(codec), "http://x.test/a")
        assert not extracted.skip and extracted.text == extract_page(article_page.encode(), "http://x.test/a").text


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


def test_utf8_with_a_few_broken_bytes_stays_utf8():
    # one stray cp1252 byte in an otherwise UTF-8 page: detection would pick a single-byte charset and garble it
    body = ("<p>" + "Schöne Grüße aus Köln, ärgerlich übrigens. " * 20 + "</p>").encode() + b"<p>caf\xe9</p>"
    text = decode_html(body, "text/html; charset=utf-8")
    assert "Schöne Grüße aus Köln" in text and text.count("\ufffd") == 1


def test_a_malformed_link_does_not_cost_the_page():
    html = article("Links", 1, links=["http://[ccpa-preferences/", "/ok", "https://other.test/x"])
    page = extract_page(html.encode(), "http://site.test/")
    assert page.skip == "" and page.title == "Links" and SENTENCES[1] in page.text
    assert "http://site.test/ok" in page.links and "https://other.test/x" in page.links


def test_code_and_media_are_dropped_before_extraction_but_json_ld_and_noscript_stay():
    from tasks.collect.extract_text import parse_html, strip_non_text

    tree = parse_html("<html><head><script type='application/ld+json'>{\"@type\": \"Article\"}</script>"
                      "<style>p {}</style></head><body><p>kept<script>var x;</script> tail</p><svg><text>no</text>"
                      "</svg><noscript>for crawlers</noscript></body></html>")
    assert tree is not None
    strip_non_text(tree)
    assert tree.xpath("//script/@type") == ["application/ld+json"] and not tree.xpath("//style|//svg")
    assert tree.xpath("string(//p)") == "kept tail" and tree.xpath("string(//noscript)") == "for crawlers"


def test_metadata_comes_from_meta_tags_json_ld_and_the_page():
    head = ('<meta name="author" content="Ada Lovelace"><script type="application/ld+json">'
            '{"@type": "NewsArticle", "headline": "Engines", "datePublished": "2021-03-04"}</script>')
    page = extract_page(article("Analytical", 2, head=head).encode(), "http://site.test/a")
    assert (page.title, page.author, page.date) == ("Analytical", "Ada Lovelace", "2021-03-04")


def test_noindex_can_be_ignored_only_when_asked():
    noindex = article("Private", 1, head='<meta name="robots" content="noindex">').encode()
    assert extract_page(noindex, "http://site.test/").skip == "noindex"
    assert SENTENCES[1] in extract_page(noindex, "http://site.test/", honour_noindex=False).text


# RFC 3986 §5.4 reference resolution examples (base http://a/b/c/d;p?q) that a crawler meets in <a href>, plus the
# path-absolute forms the fast path must hand to urljoin (empty query, ;params, dot segments, backslash).
RFC3986_BASE = "http://a/b/c/d;p?q"
RFC3986_EXAMPLES = {"g": "http://a/b/c/g", "./g": "http://a/b/c/g", "g/": "http://a/b/c/g/", "/g": "http://a/g",
                    "//g": "http://g", "?y": "http://a/b/c/d;p?y", "g?y": "http://a/b/c/g?y", ";x": "http://a/b/c/;x",
                    "g;x": "http://a/b/c/g;x", "..": "http://a/b/", "../g": "http://a/b/g", "../..": "http://a/",
                    "/./g": "http://a/g", "/../g": "http://a/g", "g.": "http://a/b/c/g.", "./g/.": "http://a/b/c/g/",
                    "g;x=1/../y": "http://a/b/c/y"}


def test_links_resolve_as_rfc3986_and_urljoin_say():
    from urllib.parse import urljoin

    tricky = ["/x?", "/x;p", "/x;p?q=1", "/a/./b/../c", "/x\\y", "/plain/path?q=1"]
    html = article("Links", 0, links=[*RFC3986_EXAMPLES, *tricky])
    links = extract_page(html.encode(), RFC3986_BASE).links
    for href, expected in RFC3986_EXAMPLES.items():
        assert expected in links, href
    for href in tricky:
        assert urljoin(RFC3986_BASE, href) in links, href


def test_parsing_repairs_the_page_as_trafilatura_does():
    import lxml.html
    from lxml import etree
    from trafilatura.utils import repair_faulty_html

    from tasks.collect.extract_text import _parser, parse_html

    xhtml = '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">'
    body = "<body><p>" + "Words and more words. " * 400 + "</p></body></html>"
    pages = {"xhtml doctype": f"{xhtml}\n<html>{body}", "self-closing html": f"<!doctype html>\n<html lang='en'/>\n{body}",
             "control characters": f"<html>\n{body[:300]}\x0b\x01 tail\ufffe\uffff{body[300:]}",
             "one long line": f"{xhtml}<html>{body}", "newline far in": f"{xhtml}<html>{body[:5000]}\n{body[5000:]}"}
    for name, text in pages.items():
        reference = lxml.html.fromstring(repair_faulty_html(text, text[:50].lower()).encode(), parser=_parser())
        assert etree.tostring(parse_html(text)) == etree.tostring(reference), name


def test_a_fragment_whose_root_htmldate_cannot_drop_keeps_its_text():
    # lxml makes a lone top-level <svg> the root; htmldate's cleaning then asserts on dropping it
    body = "<svg>x<details>" + " ".join(SENTENCES[:3]) + "</details>"
    page = extract_page(body.encode(), "http://site.test/svg")
    assert page.skip == "" and SENTENCES[1] in page.text and page.date is None


# Tag soup from the parts that trip extractors: boilerplate classes trafilatura prunes, elements it cleans or
# converts, root-level media, unclosed tags, entities, control and non-characters, literal control tokens.
SOUP_TAGS = ("div", "p", "span", "a", "ul", "li", "table", "tr", "td", "article", "section", "nav", "footer", "aside",
             "main", "h1", "pre", "code", "form", "noscript", "figure", "img", "br", "math", "svg", "script", "style",
             "details", "template", "iframe", "body", "html", "head", "title", "meta")
SOUP_ATTRIBUTES = ('class="comment"', 'id="comments"', 'class="infinite-scroll"', 'class="cookie-banner"',
                   'class="footer"', 'id="main"', 'itemprop="articleBody"', 'style="display:none"', 'href="/x"',
                   'rel="nofollow"', 'class="&#10;comment"', "")
SOUP_WORDS = ("the", "river", "mill", "bridge", "<|bos|>", "\u200b", "\x0b", "&", "&amp;", "<", ">", "\ufffe", "2021-03-04")


def _soup(rng, depth: int = 0) -> str:  # type: ignore[no-untyped-def]
    parts = []
    for _ in range(rng.randint(0, 5)):
        if rng.random() < 0.45 and depth < 10:
            tag = rng.choice(SOUP_TAGS)
            close = f"</{tag}>" if rng.random() < 0.9 else ""
            parts.append(f"<{tag} {rng.choice(SOUP_ATTRIBUTES)}>{_soup(rng, depth + 1)}{close}")
        else:
            parts.append(" ".join(rng.choice(SOUP_WORDS) for _ in range(rng.randint(1, 40))))
    return "".join(parts)


def test_no_page_makes_extraction_raise():
    import random

    rng = random.Random(13)
    for index in range(300):
        body = _soup(rng).encode("utf-8", "surrogatepass")
        for fallback in (False, True):
            page = extract_page(body, f"http://site.test/{index}", fallback=fallback)
            assert page.skip in ("", "empty_text", "extract_error"), page.skip
