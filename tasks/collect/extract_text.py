"""The trafilatura side of `tasks.collect.extract`: parsing, the pre-pass, metadata and the main text.

Kept apart so `extract` holds the crawler's concerns (charset, binary payloads, robots directives, links) and this
module holds what decides extraction speed and quality; `bench/extract.py` measures the two together as the crawler
runs them. Heavy imports stay inside the functions: worker processes pay for them once, the CLI never.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from tasks.collect.xpath_gates import ClassIdValues

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
# The fast main extractor's result is trusted unless it is shorter than this (characters) or has no paragraph text:
# the pages where trafilatura's comparison with readability and jusText changes the outcome are nearly all among those.
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

    json_ld = _json_ld()(tree)
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
    """trafilatura's main text of `tree` (the page less `NEVER_TEXT`, meta and link elements allowed), which it
    changes. By its own cascade of stages (`_cascade`): fast mode on `tree` less `FAST_PASS_DROPS`; when the main
    extractor's result is short or has no paragraph text, the comparison with readability and jusText on
    `full_tree()`, a fresh parse (a copy made up front would cost every page what few need).
    `always_compare`: trafilatura's full sequence on every page."""
    from lxml import etree
    from trafilatura.xml import xmltotxt

    etree.strip_elements(tree, "meta", "link", *(() if always_compare else FAST_PASS_DROPS), with_tail=False)
    body, _ = _full_sequence(tree, url) if always_compare else _cascade(tree, url, full_tree)
    return xmltotxt(body, False).strip() if body is not None else ""


@functools.cache
def _extractor(fast: bool):  # type: ignore[no-untyped-def]
    from trafilatura.settings import Extractor

    return Extractor(output_format="python", fast=fast, **_EXTRACTOR_OPTIONS)


def _options(fast: bool, url: str):  # type: ignore[no-untyped-def]
    options = copy.copy(_extractor(fast))
    options.url = options.source = url
    return options


def _full_sequence(tree: HtmlElement, url: str) -> tuple[HtmlElement | None, str]:
    """trafilatura's whole cascade, comparison included, on `tree` itself, which it changes: `bare_extraction`
    would first copy the whole tree, which costs about 40% of parsing it."""
    from trafilatura.core import trafilatura_sequence

    options = _options(False, url)
    body, text, _, _ = trafilatura_sequence(tree, options, url)
    return (body, text) if len(text) >= options.min_output_size else (None, "")


def _cascade(tree: HtmlElement, url: str, full_tree: Callable[[], HtmlElement | None]
             ) -> tuple[HtmlElement | None, str]:
    """trafilatura 2.3's `trafilatura_sequence` with comments off, rebuilt from its stages so that the costly
    comparison runs only where it can matter and reuses the main extractor's result:

    1. main extractor (fast mode) on `tree`;
    2. only if that result is doubtful: readability and jusText against it, on a fresh parse of the whole page
       (readability weighs the navigation the fast pass dropped; jusText reads that tree's cleaning);
    3. baseline rescue and 4. recall escalation, as trafilatura does them, in the mode the page ran in.
    The page-text measure that gates step 4 is trafilatura's `html2txt`, computed without its regex scan of
    every class and id when no class or id on the page can match it."""
    from trafilatura.external import compare_extraction
    from trafilatura.htmlprocessing import convert_tags, tree_cleaning
    from trafilatura.main_extractor import extract_content

    options = _options(True, url)
    tree, values = _raw_prune(tree)
    cleaned = convert_tags(tree_cleaning(copy.copy(tree), options), options, url)
    body, text = extract_content(cleaned, options)
    if _doubtful(body, text):
        fresh = full_tree()
        if fresh is not None:
            options = _options(False, url)
            tree, values = _raw_prune(fresh)
            cleaned = tree_cleaning(copy.copy(tree), options)
            body, text = compare_extraction(cleaned, copy.copy(tree), body, text, options)
    body, text = _rescue(tree, values, body, text, options, url)
    return (body, text) if len(text) >= options.min_output_size else (None, "")


def _raw_prune(tree: HtmlElement) -> tuple[HtmlElement, ClassIdValues]:
    """trafilatura's prune of the raw tree (appended articles, comment sections) that all its stages inherit;
    a thread-forum page keeps its comment containers, which hold the posts. Returns the tree and the class and
    id values read before pruning: they let the walks that cannot match on this page be skipped, here and in
    `_page_text_length`."""
    from trafilatura.core import _DISCUSSION_FORUM_POSTING_RE, RAW_TREE_PRUNE_XPATH, REMOVE_COMMENTS_AND_LISTS_XPATH
    from trafilatura.htmlprocessing import prune_unwanted_nodes

    # trafilatura's _forum_thread_page, by a compiled XPath instead of ElementPath's walk in Python
    is_forum = any(script.text and _DISCUSSION_FORUM_POSTING_RE.search(script.text) for script in _json_ld()(tree))
    values = ClassIdValues(tree)
    for expression in RAW_TREE_PRUNE_XPATH + ([] if is_forum else REMOVE_COMMENTS_AND_LISTS_XPATH):
        if values.may_select(expression):
            tree = prune_unwanted_nodes(tree, [expression])
    return tree, values


def _rescue(tree: HtmlElement, values: ClassIdValues, body: HtmlElement, text: str,
            options, url: str) -> tuple[HtmlElement, str]:  # type: ignore[no-untyped-def]
    """Stages 3 and 4 of `trafilatura_sequence`, comments off: the baseline on the raw tree when the text is
    shorter than trafilatura's minimum, then, when it covers little of the page, a retry in recall mode (and, in
    comparison mode, jusText on the whole page), each kept only when clearly longer."""
    import logging

    from lxml.etree import LxmlError
    from trafilatura.baseline import baseline
    from trafilatura.core import (
        ESCALATION_ACCEPT_RATIO,
        ESCALATION_JUSTEXT_RATIO,
        ESCALATION_MAX_LENGTH,
        ESCALATION_PAGE_SHARE,
        _recall_retry,
    )
    from trafilatura.external import justext_rescue

    if len(text) < options.min_extracted_size:
        baseline_body, baseline_text, baseline_length = baseline(tree)
        if baseline_length > len(text):
            body, text = baseline_body, baseline_text
    if not 0 < len(text) < ESCALATION_MAX_LENGTH or not _covers_little(tree, values, len(text), ESCALATION_PAGE_SHARE):
        return body, text
    recall = copy.copy(options)
    recall.focus = "recall"
    recall_text = justext_text = ""
    # as trafilatura: a failing retry keeps the text found so far. A retry fails the way lxml fails on a tree it
    # cannot handle (LxmlError; ValueError for text or a tag name it rejects): readability's and jusText's own
    # errors are caught inside trafilatura, and 3000 fuzzed retries raised nothing else. Any other error is a bug
    # and reaches `extract_page`, which counts the page as extract_error.
    try:
        recall_body, recall_text = _recall_retry(tree, recall, url)
    except (LxmlError, ValueError) as exc:
        logging.getLogger(__name__).debug("recall retry failed on %s: %s", url, exc)
    if not options.fast:
        try:
            justext_body, justext_text = justext_rescue(copy.copy(tree), options)
        except (LxmlError, ValueError) as exc:
            logging.getLogger(__name__).debug("jusText retry failed on %s: %s", url, exc)
    if len(justext_text) > len(recall_text) and len(justext_text) > ESCALATION_JUSTEXT_RATIO * len(text):
        return justext_body, justext_text
    if len(recall_text) >= options.min_extracted_size and len(recall_text) > ESCALATION_ACCEPT_RATIO * len(text):
        return recall_body, recall_text
    return body, text


def _covers_little(tree: HtmlElement, values: ClassIdValues, length: int, share: float) -> bool:
    """Whether `length` < `share` * len(trafilatura's `html2txt(tree)`), the gate of its recall escalation. The
    exact measure copies the body and walks it; most pages are decided by a bound first: whitespace-collapsed,
    the body's text is at least as long as html2txt's (which only deletes text and puts one space at each block
    element's start and end, and a space adds at most one character once whitespace is collapsed)."""
    body = tree.find(".//body")
    body = body if body is not None else tree
    upper_bound = len(" ".join(body.text_content().split())) + 2 * (int(_count_elements()(body)) + 1)
    return length < share * upper_bound and length < share * _page_text_length(tree, values)


@functools.cache
def _count_elements():  # type: ignore[no-untyped-def]
    from lxml.etree import XPath

    return XPath("count(.//*)")


def _page_text_length(tree: HtmlElement, values: ClassIdValues) -> int:
    """len(trafilatura.baseline.html2txt(tree)) at less cost: only the body is copied, and the cleaning's
    cookie-banner clause is left out when no class or id on the page can match it (`xpath_gates`)."""
    from trafilatura.baseline import _spaced_text, basic_cleaning
    from trafilatura.xml import delete_element

    body = tree.find(".//body")
    body = copy.copy(body if body is not None else tree)
    by_tag, cookie_banners = _basic_clean_parts()
    if by_tag is None or values.may_select(cookie_banners):
        return len(_spaced_text(basic_cleaning(body)))
    for element in by_tag(body):
        delete_element(element)
    return len(_spaced_text(body))


@functools.cache
def _basic_clean_parts():  # type: ignore[no-untyped-def]
    """trafilatura's BASIC_CLEAN_XPATH split into its tag clauses and its cookie-banner clause, the one that
    costs (a regex test per element); (None, None) if its expression no longer has that shape."""
    from lxml.etree import XPath
    from trafilatura.settings import BASIC_CLEAN_XPATH

    by_tag, separator, cookie_banners = BASIC_CLEAN_XPATH.path.partition("|.//*[re:test(")
    if not separator:
        return None, None
    namespaces = {"re": "http://exslt.org/regular-expressions"}
    return XPath(by_tag), XPath(".//*[re:test(" + cookie_banners, namespaces=namespaces)


@functools.cache
def _json_ld():  # type: ignore[no-untyped-def]
    from lxml.etree import XPath

    return XPath('.//script[@type="application/ld+json"]')


def _doubtful(body: HtmlElement, text: str) -> bool:
    return len(text) < COMPARE_BELOW_CHARS or not body.xpath(".//p//text()")
