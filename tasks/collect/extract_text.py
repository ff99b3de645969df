"""The trafilatura side of `tasks.collect.extract`: parsing, the pre-pass, metadata and the main text.

Kept apart so `extract` holds the crawler's concerns (charset, binary payloads, robots directives, links) and this
module holds what decides extraction speed and quality; `bench/extract.py` measures the two together as the crawler
runs them. Heavy imports stay inside the functions: worker processes pay for them once, the CLI never.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lxml.html import HtmlElement

# Bytes of UTF-8 text that are never XML characters: the C0 controls but tab, LF and CR (the rest of trafilatura's
# invalid set, U+FFFE and U+FFFF, is looked up in the text).
_XML_VALID_BYTES = bytes([9, 10, 13, *range(32, 256)])
# Elements whose content is never page text (code, styling, media, form controls); trafilatura discards them all
# too, but only after copying and walking the tree several times. JSON-LD scripts stay: the metadata and
# trafilatura's baseline read them. <noscript> stays: some pages put their whole text there for crawlers.
NEVER_TEXT = ("script", "style", "svg", "template", "iframe", "object", "embed", "canvas", "link", "meta", "select",
              "button", "input", "textarea", "datalist", "picture", "source", "video", "audio", "map")
# Boilerplate by HTML semantics, and images. trafilatura drops these too (images, without include_images, before
# it reads any text), but its fast pass also copies the raw tree, measures the page and runs its baseline on it,
# where they cost time (an <img> carries many attributes); the comparison pass keeps them, readability and jusText
# weigh them.
FAST_PASS_DROPS = ("nav", "footer", "aside", "img")
# The fast result is trusted unless it is shorter than this (characters) or has no paragraph text: the pages where
# trafilatura's comparison with readability and jusText changes the outcome are nearly all among those.
COMPARE_BELOW_CHARS = 1000
_EXTRACTOR_OPTIONS = {"comments": False, "tables": True, "formatting": False, "dedup": False}


@functools.cache
def _parser():  # type: ignore[no-untyped-def]
    import lxml.html
    from lxml import etree

    # trafilatura's parser settings, but a C-level element lookup: lxml.html's default calls a Python method for
    # every element proxy, and trafilatura creates hundreds of thousands of them per thousand pages.
    parser = lxml.html.HTMLParser(collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True,
                                  remove_pis=True)
    parser.set_element_class_lookup(etree.ElementDefaultClassLookup(
        element=lxml.html.HtmlElement, comment=lxml.html.HtmlComment, pi=lxml.html.HtmlProcessingInstruction,
        entity=lxml.html.HtmlEntity))
    return parser


def parse_html(text: str) -> HtmlElement | None:
    """The page as an lxml.html tree (None when it is not HTML), repaired the way trafilatura's `load_html` does."""
    import lxml.html
    from lxml.etree import ParserError
    from trafilatura.utils import repair_faulty_html

    data = text.encode("utf-8", "surrogatepass")
    if data.translate(None, _XML_VALID_BYTES) or "\ufffe" in text or "\uffff" in text:
        data = repair_faulty_html(text, text[:50].lower()).encode("utf-8", "surrogatepass")
    else:
        # Nothing for its character pass to remove (a regex over the whole page, the costly part): its doctype and
        # self-closing <html/> fixes only look at the first line and the first 4,096 characters, so it runs on
        # the whole lines covering those.
        head = text[: text.find("\n", 4096) + 1 or len(text)]
        repaired = repair_faulty_html(head, text[:50].lower()).encode("utf-8", "surrogatepass")
        data = repaired + data[len(head.encode("utf-8", "surrogatepass")):]
    try:
        # bytes, as the parser's encoding is fixed: a str with an XML encoding declaration would be refused
        tree = lxml.html.fromstring(data, parser=_parser())
    except ParserError:  # an empty or whitespace-only document
        return None
    return tree if len(tree) else None


def strip_non_text(tree: HtmlElement, keep: tuple[str, ...] = ()) -> HtmlElement:
    """Drop `NEVER_TEXT` elements but `keep` (their tails stay), so every later stage walks a smaller tree."""
    from lxml import etree

    json_ld = tree.xpath("//script[@type='application/ld+json']")
    for element in json_ld:
        element.tag = "lmforge-json-ld"
    etree.strip_elements(tree, *(tag for tag in NEVER_TEXT if tag not in keep), with_tail=False)
    for element in json_ld:
        element.tag = "script"
    return tree


def parse_stripped(text: str) -> HtmlElement | None:
    tree = parse_html(text)
    return strip_non_text(tree) if tree is not None else None


def metadata(tree: HtmlElement, url: str) -> tuple[str | None, str | None, str | None]:
    """(title, author, date) from meta tags and JSON-LD, then the title elements and htmldate's quick search;
    trafilatura's full metadata pass also hunts sitenames, categories, tags and licences, which the crawl drops.
    `tree` may lack the `NEVER_TEXT` elements but meta and link: every search walks a smaller tree, and htmldate no
    longer takes a date from a script's code (7 of the 990 corpus pages had one only there)."""
    from htmldate import find_date
    from trafilatura.metadata import examine_meta, extract_meta_json, extract_title

    meta = examine_meta(tree)
    meta = extract_meta_json(tree, meta)
    title = meta.title or extract_title(tree)
    date = find_date(tree, url=url, extensive_search=False, original_date=True)
    return title, meta.author, date


def main_text(tree: HtmlElement, url: str, full_tree: Callable[[], HtmlElement | None],
              always_compare: bool = False) -> str:
    """trafilatura's main text: fast mode on `tree` less `FAST_PASS_DROPS`, then, when that result is short or has
    no paragraph text (or always, with `always_compare`), the full readability/jusText comparison on `full_tree()`,
    a fresh tree: the fast pass changed `tree`, and a copy made up front would cost every page what few need."""
    from lxml import etree

    body, text = None, ""
    if not always_compare:
        etree.strip_elements(tree, *FAST_PASS_DROPS, with_tail=False)
        body, text = _sequence(tree, url, fast=True)
    if body is None or _doubtful(body, text):
        fresh = full_tree()
        if fresh is not None:
            full_body, full_text = _sequence(fresh, url, fast=False)
            if full_body is not None:
                body, text = full_body, full_text
    if body is None:
        return ""
    from trafilatura.xml import xmltotxt

    return xmltotxt(body, False).strip()


@functools.cache
def _extractor(fast: bool):  # type: ignore[no-untyped-def]
    from trafilatura.settings import Extractor

    return Extractor(output_format="python", fast=fast, **_EXTRACTOR_OPTIONS)


def _sequence(tree: HtmlElement, url: str, fast: bool) -> tuple[HtmlElement | None, str]:
    """trafilatura's extraction cascade on `tree` itself, which it changes: `bare_extraction` would first copy the
    whole tree, which costs about 40% of parsing it."""
    import copy

    from trafilatura.core import trafilatura_sequence

    options = copy.copy(_extractor(fast))
    options.url = options.source = url
    body, text, _, _ = trafilatura_sequence(tree, options, url)
    return (body, text) if len(text) >= options.min_output_size else (None, "")


def _doubtful(body: HtmlElement, text: str) -> bool:
    return len(text) < COMPARE_BELOW_CHARS or not body.xpath(".//p//text()")
