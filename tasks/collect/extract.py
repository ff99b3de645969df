"""Main-text extraction from raw HTML bytes, shared by the crawler and the WARC ingest path.

`extract_page` decodes the body (trusting valid UTF-8 over a declared charset, since mis-declared pages are common),
refuses binary payloads served as HTML, honours `<meta name="robots">`, collects links and feeds for the frontier,
and runs trafilatura 2.x for text and metadata. It is a top-level function on plain data so it runs in worker
processes. `doc_row` shapes one `tasks.core.schema.DOC_SCHEMA` row; `write_docs` writes a Parquet part atomically.

Speed and quality (measured by `bench/extract.py` on trafilatura's own evaluation corpus): the page is parsed with
lxml's C-level element lookup instead of lxml.html's per-element Python callback; elements that never hold text
(scripts other than JSON-LD, styles, SVG, media, form controls) are dropped before extraction, so every trafilatura
stage walks a smaller tree; metadata is read from what is cheap and reliable (meta tags, JSON-LD, the title,
htmldate's quick search, all on the tree without code and media); the main text comes from trafilatura's cascade of
stages, recomposed so that its readability/jusText comparison runs only for doubtful results of its fast main
extractor (`tasks.collect.extract_text`).
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-:.]+)""", re.I)
# Labels browsers decode as the Windows superset (WHATWG Encoding Standard): a page declared ISO-8859-1 with cp1252
# quotes and dashes shows “ ” — in a browser, and C1 control characters through Python's latin-1.
_BROWSER_ENCODING = {"iso8859-1": "cp1252", "ascii": "cp1252", "iso8859-9": "cp1254", "tis-620": "cp874",
                     "iso8859-11": "cp874", "gb2312": "gb18030", "gbk": "gb18030", "shift_jis": "cp932",
                     "euc_kr": "cp949", "big5": "big5hkscs"}
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_BINARY_MAGIC = (b"\x89PNG", b"%PDF", b"\x1f\x8b", b"PK\x03\x04", b"GIF8", b"\xff\xd8\xff", b"\x7fELF", b"RIFF")
_TEXT_BYTES = bytes([9, 10, 11, 12, 13, *range(32, 256)])  # everything but control characters
# What in a path-absolute href makes urljoin do more than prefix the origin: dot segments, the backslash and the
# tab/CR/LF that urlsplit treats specially, and the empty query or ;params that it drops.
_JOIN_NEEDED = re.compile(r"/\.|[\\\t\r\n;]|\?$")
FEED_TYPES = ("application/rss+xml", "application/atom+xml")


@dataclass
class PageExtract:
    """What one HTML page gave: text and metadata, or `skip` saying why there is no document."""

    skip: str = ""  # "" | binary_content | empty_text | noindex | extract_error
    text: str = ""
    title: str | None = None
    author: str | None = None
    date: str | None = None
    language_hint: str | None = None
    links: list[str] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)
    nofollow: bool = False


def looks_binary(body: bytes) -> bool:
    """True for payloads that are not text whatever their Content-Type says (images, PDFs, archives)."""
    head = body[:4096]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # UTF-16 text: every other byte of ASCII is 0
        return False
    if head.startswith(_BINARY_MAGIC) or b"\x00" in head:
        return True
    controls = len(head.translate(None, _TEXT_BYTES))  # C speed: a Python loop over 4 KiB costs more than parsing
    return len(head) > 0 and controls / len(head) > 0.05


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """Text of an HTML body: UTF-8 wins (valid, or all but a few bytes), then the declared charset (header, then
    <meta>) as browsers read it, then detection. A byte-order mark overrides them all, as in browsers."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(codec, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # UTF-8 with a few broken bytes (a truncated multibyte character, one pasted cp1252 quote) is still UTF-8:
    # a single-byte charset would garble every other non-ASCII character of the page.
    text = body.decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))  # C speed, unlike a loop over the characters
    if broken * 20 <= non_ascii - broken:
        return text
    declared = []
    if content_type and "charset=" in content_type.lower():
        declared.append(content_type.lower().split("charset=")[-1].split(";")[0].strip(" \"'"))
    match = _META_CHARSET.search(body[:4096])
    if match:
        declared.append(match.group(1).decode("ascii", "ignore"))
    for name in declared:
        try:
            codec = codecs.lookup(name).name
            if codec != "utf-8":  # UTF-8 already failed
                return body.decode(_BROWSER_ENCODING.get(codec, codec))
        except (LookupError, UnicodeDecodeError):
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    return body.decode(best.encoding if best else "cp1252", errors="replace")


def extract_page(body: bytes, url: str, content_type: str | None = None, content_language: str | None = None,
                 robots_header: str | None = None, fallback: bool = False, *,
                 honour_noindex: bool = True) -> PageExtract:
    """Decode, parse and extract one page (see module docstring). Runs in worker processes. `fallback`: always run
    trafilatura's full comparison; `honour_noindex=False` only for measuring extraction (bench/extract.py)."""
    if looks_binary(body):
        return PageExtract(skip="binary_content")
    from tasks.collect.extract_text import main_text, metadata, parse_html, parse_stripped, strip_non_text

    html = decode_html(body, content_type)
    tree = parse_html(html)
    if tree is None:
        return PageExtract(skip="empty_text")
    meta_robots = " ".join(tree.xpath("//meta[translate(@name,'ROBTS','robts')='robots']/@content"))
    directives = f"{meta_robots},{robots_header or ''}".lower().replace(" ", "")
    base = (tree.xpath("//base/@href") or [url])[0]
    page = PageExtract(nofollow="nofollow" in directives or "none" in directives.split(","))
    if not page.nofollow:
        # One page repeats links a lot (indexes, tables of contents): dedupe here, off the crawler's thread.
        hrefs = dict.fromkeys(h.split("#")[0] for h in _follow_hrefs()(tree))
        resolve = _resolver(base)
        page.links = list(dict.fromkeys(link for link in (resolve(h) for h in hrefs if h) if link))
        page.feeds = [link for el in tree.xpath("//link[@rel='alternate'][@href]")
                      if (el.get("type") or "").lower() in FEED_TYPES and (link := resolve(el.get("href")))]
    lang = tree.xpath("/html/@lang|/html/@xml:lang", namespaces={"xml": "http://www.w3.org/XML/1998/namespace"})
    page.language_hint = (lang[0] if lang else content_language or None) or None
    if honour_noindex and ("noindex" in directives or "none" in directives.split(",")):
        page.skip = "noindex"
        return page
    # code and media go first: metadata needs only meta, link and JSON-LD, main_text drops meta and link
    tree = strip_non_text(tree, keep=("meta", "link"))
    # Broad catches: trafilatura and htmldate fail on some trees nobody meant to write (htmldate asserts when the
    # element it drops is the root, as in a fragment that is one <svg>), and one such page must stop neither a
    # crawl nor a WARC ingest. Metadata failing keeps the text; the text failing is counted as extract_error.
    try:
        page.title, page.author, page.date = metadata(tree, url)
    except Exception:  # noqa: BLE001
        page.title = page.author = page.date = None
    try:
        page.text = main_text(tree, url, lambda: parse_stripped(html), fallback)
    except Exception:  # noqa: BLE001
        page.skip = "extract_error"
        return page
    if not page.text:
        page.skip = "empty_text"
    return page


@functools.cache
def _follow_hrefs():  # type: ignore[no-untyped-def]
    from lxml import etree

    # plain strings: lxml's default "smart" strings carry a link back to their element, costly by the thousand
    return etree.XPath("//a[not(contains(@rel,'nofollow'))]/@href", smart_strings=False)


def _resolver(base: str) -> Callable[[str], str]:
    """`href` -> absolute URL against `base`; "" for an href no URL parser accepts (`http://[bad/`), never an
    error. Absolute and plain path-absolute hrefs, most links on a page, skip urljoin, which would only split and
    rejoin them (the frontier normalizes)."""
    try:
        parts = urlsplit(base)
    except ValueError:
        parts = None
    origin = f"{parts.scheme}://{parts.netloc}" if parts and parts.scheme in ("http", "https") and parts.netloc else ""

    def resolve(href: str) -> str:
        href = href.strip()
        if href.startswith(("http://", "https://")) and "\\" not in href:
            return href
        if origin and href.startswith("/") and not href.startswith("//") and not _JOIN_NEEDED.search(href):
            return origin + href
        try:
            return urljoin(base, href)
        except ValueError:
            return ""

    return resolve


def doc_id(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()


def doc_row(page: PageExtract, *, url: str, domain: str, fetch_time: str, http_status: int, content_hash: str,
            warc_file: str | None, warc_record_id: str | None) -> dict[str, Any]:
    """One `tasks.core.schema.DOC_SCHEMA` row."""
    return {"id": doc_id(url), "text": page.text, "url": url, "domain": domain, "title": page.title,
            "author": page.author, "date": page.date, "fetch_time": fetch_time, "http_status": http_status,
            "content_hash": content_hash, "language_hint": page.language_hint, "warc_file": warc_file,
            "warc_record_id": warc_record_id, "source": "crawl"}


def write_docs(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as Parquet (zstd) under a temporary name, then rename: a reader never sees half a file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.core.schema import DOC_SCHEMA

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=DOC_SCHEMA), tmp, compression="zstd")
    os.replace(tmp, path)
