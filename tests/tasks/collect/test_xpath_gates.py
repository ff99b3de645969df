"""xpath_gates and the extract_text measures built on it, checked against trafilatura on generated pages.

The gate's promise is soundness: when `ClassIdValues(tree).may_select(xpath)` is False, `xpath(tree)` is empty, so
skipping the walk changes nothing. Random small trees whose class and id values mix the words of trafilatura's own
expressions (case, affixes, several tokens, embedded newlines) probe it; fixed tables pin which expression forms
get a gate and how anchors and flags read across the newline-joined values. The page-text measures must equal
trafilatura's `html2txt` exactly, on both the fast branch (no cookie-banner value on the page) and the slow one.
"""

from __future__ import annotations

import functools
import random

import lxml.html
import pytest
import trafilatura
from fault_site import SENTENCES, article
from lxml.etree import XPath
from trafilatura import xpaths
from trafilatura.baseline import html2txt
from trafilatura.core import ESCALATION_PAGE_SHARE
from trafilatura.settings import BASIC_CLEAN_XPATH

from tasks.collect.extract import extract_page
from tasks.collect.extract_text import _basic_clean_parts, _covers_little, _page_text_length, parse_html
from tasks.collect.xpath_gates import ClassIdValues, gate

RE_NAMESPACE = {"re": "http://exslt.org/regular-expressions"}


def cookie_banners() -> XPath:
    """The cookie-banner clause of trafilatura's BASIC_CLEAN_XPATH, as extract_text splits it off and gates it."""
    return _basic_clean_parts()[1]


def trafilatura_expressions() -> list[tuple[str, XPath]]:
    named = [
        (f"{name}[{i}]", expression)
        for name in ("RAW_TREE_PRUNE_XPATH", "REMOVE_COMMENTS_AND_LISTS_XPATH", "COMMENTS_XPATH")
        for i, expression in enumerate(getattr(xpaths, name))
    ]
    return [*named, ("cookie_banners", cookie_banners())]


EXPRESSIONS = trafilatura_expressions()

# Words from the expressions (some matching, some near misses such as 'commentary', 'antisocial', 'infinite_scroll')
# and plain ones; a tree draws few enough gated words that most expressions cannot match most trees.
GATED_WORDS = (
    "comment",
    "comments",
    "comments-list",
    "comment-list",
    "commentlist",
    "Comment",
    "Comments",
    "commentary",
    "comol",
    "disqus_thread",
    "dsq-comments",
    "article-comments",
    "post-comments",
    "comment-page",
    "comments-content",
    "mvp-post-add-box",
    "mvp-post-add-wrap",
    "infinite-scroll",
    "infinitescroll",
    "infinite_scroll",
    "elementor-share-buttons",
    "cookie-banner",
    "CookieConsent",
    "cookie_notice",
    "onetrust",
    "borlabs",
    "social",
    "social-links",
    "antisocial",
)
PLAIN_WORDS = (
    "main",
    "content",
    "x",
    "post",
    "article",
    "sidebar",
    "nav-bar",
    "wrap",
    "box",
    "list",
    "scroll",
    "share",
    "cookies",
    "entry",
    "footer",
)
# div and section, the tags most expressions test for, come up more often
TREE_TAGS = ("div", "div", "div", "section", "section", "aside", "ul", "ol", "li", "p", "span", "details", "list", "h1")


def attribute_value(rng: random.Random) -> str:
    """One class or id value: 1-3 tokens, each recased and maybe affixed, joined by spaces or newlines."""
    tokens = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        word = rng.choice(GATED_WORDS) if rng.random() < 0.5 else rng.choice(PLAIN_WORDS)
        word = rng.choice((str, str, str, str, str.lower, str.upper, str.capitalize))(word)
        tokens.append(rng.choice(("", "", "", "x-", "my", " ")) + word + rng.choice(("", "", "", " main", "-2", "\n")))
    # a literal newline and the &#10; reference both put a newline inside the value
    return rng.choice((" ", " ", "\n", "&#10;", "  ")).join(tokens)


def random_element(rng: random.Random, depth: int = 0) -> str:
    tag = rng.choice(TREE_TAGS)
    attributes = ""
    if rng.random() < 0.4:
        attributes += f' class="{attribute_value(rng)}"'
    if rng.random() < 0.3:
        attributes += f' id="{attribute_value(rng)}"'
    children = "".join(random_element(rng, depth + 1) for _ in range(rng.randint(0, 3) if depth < 2 else 0))
    return f"<{tag}{attributes}>{rng.choice(PLAIN_WORDS)} {children}</{tag}>"


@functools.cache
def random_trees(n: int = 400, seed: int = 20240601) -> list[tuple[str, lxml.html.HtmlElement]]:
    rng = random.Random(seed)
    trees = []
    for _ in range(n):
        html = f"<html><body>{''.join(random_element(rng) for _ in range(rng.randint(1, 2)))}</body></html>"
        trees.append((html, parse_html(html)))
    return trees


@pytest.mark.parametrize("expression", [x for _, x in EXPRESSIONS], ids=[name for name, _ in EXPRESSIONS])
def test_gate_never_skips_a_trafilatura_expression_that_selects(expression: XPath):
    assert gate(expression.path) is not None, "the extraction relies on this expression being gated"
    skipped = selecting = 0
    for html, tree in random_trees():
        selected = expression(tree)
        if not ClassIdValues(tree).may_select(expression):
            skipped += 1
            assert selected == [], f"gate skipped an expression that selects on {html!r}"
        selecting += bool(selected)
    # not vacuous: the gate skips a good share of trees, and the sample has trees where the expression selects
    assert skipped >= 0.25 * len(random_trees()), skipped
    assert selecting >= 3, selecting


NOT_GATED = {
    "union with another path": ".//*[self::div][contains(@class,'a')]|.//footer[1]",
    "union after a trailing predicate": ".//*[self::div][contains(@class,'a')][not(.//h1)] | .//aside",
    "a further step": ".//*[self::div][contains(@class,'a')]//p",
    "tag test or'ed with the attribute test": ".//*[self::div][contains(@class,'a') or self::p]",
    "tests joined by and": ".//*[self::div][contains(@class,'a') and contains(@id,'b')]",
    "attribute other than class/id": ".//*[self::div][contains(@style,'hidden')]",
    "whole-string anchor \\A": r".//*[self::div][re:test(@class, '\Acomment')]",
    "whole-string anchor \\Z": r".//*[self::div][re:test(@class, 'comment\Z')]",
    "negative lookahead a newline could fail": r".//*[self::div][re:test(@class, 'comment(?!\s)')]",
    "negative lookbehind a newline could fail": r".//*[self::div][re:test(@id, '(?<![.])comment')]",
    "flag other than i": ".//*[self::div][re:test(@class, 'comment', 'g')]",
    "negated test": ".//*[self::div][not(contains(@class,'a'))]",
    "absolute path": "//*[self::div][contains(@class,'a')]",
    "trafilatura's BASIC_CLEAN_XPATH (a union)": BASIC_CLEAN_XPATH.path,
}
GATED = {
    "trailing predicates with nested brackets, parens and a union": (
        ".//*[self::div][contains(@class,'a')][not(.//h1) or re:test(@id, 'b')]"
        "[count(.//p[contains(@id, ']')]) > 1 or (.//h2 | .//h3)]"
    ),
    "no tag test": ".//*[contains(@class, 'a')]",
    "several tag tests and starts-with": ".//*[self::div or self::section][starts-with(@id, 'social')]",
    "class|id union and the i flag": ".//*[self::div][re:test(@id|@class, 'comment-?list', 'i')]",
}


@pytest.mark.parametrize("expression", NOT_GATED.values(), ids=NOT_GATED.keys())
def test_expressions_outside_the_gated_form_get_no_gate(expression: str):
    assert gate(expression) is None


@pytest.mark.parametrize("expression", GATED.values(), ids=GATED.keys())
def test_expressions_of_the_gated_form_get_a_gate(expression: str):
    assert gate(expression) is not None
    XPath(expression, namespaces=RE_NAMESPACE)  # and they are XPaths lxml accepts


# (expression, body html, may_select, selects something): how anchors, flags and literals read across the
# newline-joined values; a True may_select with nothing selected is the gate's allowed over-approximation.
JOINED_VALUES = {
    "^ anchors at a later value's start": (
        ".//*[self::div][re:test(@class, '^[Cc]omment')]",
        '<div class="x"><div class="comments">t</div></div>',
        True,
        True,
    ),
    "^ does not anchor at a later token's start": (
        ".//*[self::div][re:test(@class, '^[Cc]omment')]",
        '<div class="x comments">t</div>',
        False,
        False,
    ),
    "^ at an embedded newline: over-approximation": (
        ".//*[self::div][re:test(@class, '^[Cc]omment')]",
        '<div class="x&#10;comments">t</div>',
        True,
        False,
    ),
    "$ anchors at a value's end before the next value": (
        ".//*[self::div][re:test(@class, 'comments$')]",
        '<div class="my-comments">t</div><p class="x">u</p>',
        True,
        True,
    ),
    "real expression, anchored class after another value": (
        xpaths.REMOVE_COMMENTS_AND_LISTS_XPATH[0].path,
        '<div class="x">t</div><section class="comments">u</section>',
        True,
        True,
    ),
    "real expression, lookahead (?!ary) at a value's end": (
        xpaths.REMOVE_COMMENTS_AND_LISTS_XPATH[0].path,
        '<div class="comment">t</div><p class="ary">u</p>',
        True,
        True,
    ),
    "i flag matches upper case": (
        ".//*[re:test(@class, 'cookie-?banner', 'i')]",
        '<div class="COOKIE-BANNER">t</div>',
        True,
        True,
    ),
    "without i, case matters": (
        ".//*[re:test(@class, 'cookie-?banner')]",
        '<div class="COOKIE-BANNER">t</div>',
        False,
        False,
    ),
    "contains is literal: . and ( are not regex": (
        ".//*[self::div][contains(@class, 'a.b(')]",
        '<div class="axb(">t</div>',
        False,
        False,
    ),
    "contains with metacharacters still matches itself": (
        ".//*[self::div][contains(@class, 'a.b(')]",
        '<div class="x a.b(">t</div>',
        True,
        True,
    ),
    "starts-with is anchored": (
        ".//*[self::div][starts-with(@id, 'social')]",
        '<div id="antisocial">t</div>',
        False,
        False,
    ),
    "starts-with at a later value": (
        ".//*[self::div][starts-with(@id, 'social')]",
        '<div class="a">t</div><div id="social-bar">u</div>',
        True,
        True,
    ),
    "id values are read as well as classes": (
        ".//*[self::section][re:test(@id|@class, '^comment[s-]')]",
        '<p class="z">t</p><section id="comments-1">u</section>',
        True,
        True,
    ),
}


@pytest.mark.parametrize(
    ("expression", "body", "may_select", "selects"), JOINED_VALUES.values(), ids=JOINED_VALUES.keys()
)
def test_anchors_flags_and_literals_read_across_joined_values(
    expression: str, body: str, may_select: bool, selects: bool
):
    xpath = XPath(expression, namespaces=RE_NAMESPACE)
    tree = parse_html(f"<html><body>{body}</body></html>")
    assert gate(expression) is not None
    assert ClassIdValues(tree).may_select(xpath) is may_select
    assert bool(xpath(tree)) is selects


# Patterns outside what trafilatura uses today where a naive gate over the joined values would be unsound
# (may_select False, yet the XPath selects); each must get no gate, or a sound one.
TRICKY_FORMS = {
    # lxml's re:test reads a missing attribute as '', which no joined value represents: no gate
    "pattern matching the empty string, element without class": (
        ".//*[self::div][re:test(@class, '^$')]",
        '<div class="a">t</div><div>u</div>',
    ),
    "anchored negative lookahead, element without class": (
        ".//*[self::div][re:test(@class, '^(?!comment)')]",
        '<div class="comment">t</div><div>u</div>',
    ),
    # joined into one regex, the second pattern's \1 would refer to the first pattern's group
    "numbered backreference": (
        r".//*[self::div][re:test(@class, '(x)') or re:test(@id, '(c)\1')]",
        '<div id="cc">t</div>',
    ),
    # a nested group inside a negative lookaround could hide a \s: no gate
    "newline-failable lookahead behind a nested group": (
        r".//*[self::div][re:test(@class, 'comment(?!()\s)')]",
        '<div class="comment">t</div><p class="b">u</p>',
    ),
    # a literal newline (not the escape \n) inside a negative lookaround: no gate
    "literal newline inside a negative lookbehind": (
        ".//*[self::div][re:test(@class, '^(?<!\n)comment')]",
        '<p class="a">t</p><div class="comment">u</div>',
    ),
}


@pytest.mark.parametrize(("expression", "body"), TRICKY_FORMS.values(), ids=TRICKY_FORMS.keys())
def test_gate_is_sound_beyond_trafilaturas_patterns(expression: str, body: str):
    xpath = XPath(expression, namespaces=RE_NAMESPACE)
    tree = parse_html(f"<html><body>{body}</body></html>")
    assert xpath(tree), "the case must select something, or it tests nothing"
    assert ClassIdValues(tree).may_select(xpath)


def test_basic_cleaning_splits_into_tag_clauses_and_the_gated_cookie_clause():
    # the fast branch of _page_text_length drops the tag clauses alone; if a trafilatura upgrade changes the
    # expression's shape the split must fail visibly (None: no fast branch), never drop something else
    by_tag, cookies = _basic_clean_parts()
    assert by_tag is not None and cookies is not None, "the fast branch is off with this trafilatura"
    assert f"{by_tag.path}|{cookies.path}" == BASIC_CLEAN_XPATH.path
    assert gate(cookies.path) is not None and gate(by_tag.path) is None


# Text runs with separators html2txt treats differently: zero-width and soft hyphen (removed as unprintable
# only in block elements' text and tails), no-break and ideographic spaces, line separator, tabs, no space at all.
SEPARATORS = (" ", " ", "", "\u200b", "\u00ad", "\u00a0", "\u3000", "\u2028", "\t", "\n", "\ufeff")
PAGE_WORDS = ("river", "bridge", "mill", "Café", "déjà", "über", "fair", "42", "cider")
PAGE_BLOCKS = (
    "<div>{t}</div><div>{t}</div>",  # glued blocks: html2txt spaces them
    "<p>{t}<b>{t}</b>{t}</p>",
    "<span>{t}</span>{t}",
    "<ul><li>{t}</li><li>{t}{c}</li></ul>",
    "{t}<br>{t}",
    "<table><tr><td>{t}</td><td>{t}</td></tr></table>",
    "<h2>{t}</h2>{t}",
    "<section>{c}</section>{t}",
    "<aside>{t}{c}</aside>{t}",
    "<footer>{t}</footer>",
    '<div class="footer">{t}{c}</div>',
    '<div id="site-footer">{t}</div>',
    '<p class="footer">{t}</p>',
    "<script>var s = '{t}';</script>",
    "<style>p {{ color: red }}</style>",
    "<svg><text>{t}</text></svg>",
    "<template><p>{t}</p></template>",
    "<fencedframe>{t}</fencedframe>",
    '<div class="cookie-banner">{t}{c}</div>',
    '<section id="CookieConsent"><p>{t}</p></section>',
    '<p class="x onetrust-text">{t}</p>',
    '<div class="cookies">{t}</div>',  # near miss: no cookie-banner match
)


def page_text(rng: random.Random) -> str:
    return "".join(rng.choice(PAGE_WORDS) + rng.choice(SEPARATORS) for _ in range(rng.randint(0, 4)))


def page_content(rng: random.Random, depth: int = 0) -> str:
    parts = []
    for _ in range(rng.randint(1, 4)):
        block = rng.choice(PAGE_BLOCKS)
        inner = page_content(rng, depth + 1) if depth < 2 and rng.random() < 0.4 else ""
        parts.append(block.replace("{t}", page_text(rng)).replace("{c}", inner).replace("{{", "{").replace("}}", "}"))
    return "".join(parts)


def random_page(rng: random.Random) -> str:
    content = page_content(rng)
    return rng.choice(
        (
            f"<!doctype html><html><head><title>t</title></head><body>{content}</body></html>",
            f'<html><body class="{rng.choice(("cookie-banner", "main"))}">{page_text(rng)}{content}</body></html>',
            f"<body>{content}</body>",
            f"<div>{content}</div>{page_text(rng)}<p>{page_text(rng)}</p>",  # a fragment: no <body> in the tree
        )
    )


def test_page_text_measures_equal_html2txt():
    rng = random.Random(7)
    share = ESCALATION_PAGE_SHARE  # the share _rescue asks about
    branches = {True: 0, False: 0}
    without_body = 0
    for _ in range(250):
        html = random_page(rng)
        tree = parse_html(html)
        if tree is None:
            continue
        before = lxml.html.tostring(tree)
        values = ClassIdValues(tree)
        exact = len(html2txt(tree))
        branches[values.may_select(cookie_banners())] += 1
        without_body += tree.find(".//body") is None
        assert _page_text_length(tree, values) == exact, html
        # lengths on both sides of the threshold, where the upper bound alone cannot decide
        threshold = int(share * exact)
        for length in {0, 1, max(threshold - 1, 0), threshold, threshold + 1, exact, exact + 3}:
            assert _covers_little(tree, values, length, share) is (length < share * exact), (html, length)
        assert lxml.html.tostring(tree) == before, "the measures must leave the caller's tree as it was"
    assert branches[True] >= 20 and branches[False] >= 20, branches
    assert without_body >= 20, without_body


COMMENT = "Reader Nine says the bridge photographs were taken on the wrong bank of the river."
APPENDED = "Orchard news: the cooperative elected a new treasurer after a long and lively meeting."
COMMENTARY = "Editorial commentary: the mill pools deserve a lifeguard during the busiest summer weeks."
COMMENT_SECTION = f'<div id="comments"><h3>Comments</h3><p>{COMMENT}</p><p>{COMMENT} Seconded.</p></div>'
APPENDED_ARTICLE = f'<div class="infinite-scroll"><h2>Orchards</h2><p>{APPENDED}</p><p>{SENTENCES[5]}!</p></div>'
COMMENTARY_BOX = f'<div class="commentary"><p>{COMMENTARY}</p></div>'  # a near miss: kept by trafilatura


PRUNING = [*xpaths.RAW_TREE_PRUNE_XPATH, *xpaths.REMOVE_COMMENTS_AND_LISTS_XPATH]


@pytest.mark.parametrize(
    ("extra", "kept", "dropped", "walks"),
    [
        (COMMENTARY_BOX + COMMENT_SECTION + APPENDED_ARTICLE, [COMMENTARY], [COMMENT, APPENDED], [True, False, True]),
        # no value on the page can match the pruning expressions: every gate skips its walk
        (COMMENTARY_BOX, [COMMENTARY], [], [False, False, False]),
    ],
    ids=["comments-and-appended-article", "gates-skip-every-prune"],
)
def test_extract_page_drops_comments_and_appended_articles_as_trafilatura_does(
    extra: str, kept: list[str], dropped: list[str], walks: list[bool]
):
    html = article("River Town", 0, extra=extra)
    values = ClassIdValues(parse_html(html))
    assert [values.may_select(expression) for expression in PRUNING] == walks
    text = extract_page(html.encode(), "http://site.test/river").text
    reference = trafilatura.extract(
        html, fast=True, include_comments=False, include_tables=True, include_formatting=False
    )
    for part in [SENTENCES[0], "(River Town, 3)", *kept]:
        assert part in text and part in reference, part
    for part in dropped:
        assert part not in text and part not in reference, part
