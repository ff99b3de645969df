"""Page-level gates for trafilatura's class/id XPaths: skip an expression that cannot select anything on a page.

trafilatura finds boilerplate with XPaths such as `.//*[self::div][re:test(@class, '^comment')]`. lxml evaluates
`re:test` by a call into Python for every candidate element, which makes these walks a large share of extraction
time, and on most pages they select nothing. When an expression requires a predicate made only of
`re:test`, `contains` or `starts-with` tests on `@class` or `@id`, joined by `or`, it can select an element only
if one of those tests holds on one of the element's class or id values. `gate` turns the tests into regexes;
`ClassIdValues.may_select` runs them over all the page's class and id values joined by newlines (with `^` and `$`
anchored at each value's ends). No match: the expression selects nothing and its walk is skipped, so the
result is exactly trafilatura's. Only expressions of the form `.//*[self::… or …][test or … test][…]` get a gate
(the tests' predicate is required, later ones only narrow); any other is always evaluated.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lxml.etree import XPath
    from lxml.html import HtmlElement

_ATTRIBUTES = r"@(?:class|id)(?:\s*\|\s*@(?:class|id))?"
_TEST = rf"(re:test|contains|starts-with)\(\s*{_ATTRIBUTES}\s*,\s*'([^']*)'\s*(?:,\s*'(i?)'\s*)?\)"
# `.//*[self::a or self::b][test or test ...]` (tag tests optional) and any further predicates, which only narrow
_GATED_FORM = re.compile(rf"\.//\*(?:\[\s*self::\w+(?:\s+or\s+self::\w+)*\s*\])?\[\s*({_TEST}(?:\s+or\s+{_TEST})*)\s*\]")


@functools.cache
def gate(expression: str) -> tuple[re.Pattern[str], ...] | None:
    """Regexes one of which some class or id value must match for `expression` to select anything, read off its
    required predicate; None for an expression not of the form `.//*[self::… or …][test or test …][…]`, or with a
    test that an element without the attribute passes (lxml reads a missing attribute as '')."""
    form = _GATED_FORM.match(expression.strip())
    if form is None or not _only_predicates(expression.strip()[form.end():]):
        return None
    patterns = []
    for function, argument, flags in re.findall(_TEST, form.group(1)):
        if function == "re:test" and not _joinable(argument):
            return None
        source = {"re:test": argument, "contains": re.escape(argument), "starts-with": "^" + re.escape(argument)}
        try:
            # compiled one by one: joined into one regex, a backreference would point at another test's group
            pattern = re.compile(source[function], re.MULTILINE | (re.IGNORECASE if flags else 0))
        except re.error:  # a pattern Python's re reads differently: no gate rather than a wrong one
            return None
        if pattern.search(""):
            return None
        patterns.append(pattern)
    return tuple(patterns)


def _only_predicates(rest: str) -> bool:
    """Whether `rest` is nothing but further predicates `[…][…]`: no union or step outside the brackets."""
    depth, quote = 0, ""
    for char in rest:
        if quote:
            quote = "" if char == quote else quote
            continue
        if depth == 0 and char != "[" and not char.isspace():
            return False
        if char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
    return depth == 0 and not quote


def _joinable(pattern: str) -> bool:
    """Whether every match `pattern` finds in one value it also finds with the value inside the newline-joined
    text, where `^` and `$` (MULTILINE) still anchor at the value's ends: not so for whole-string anchors, nor
    for a negative lookaround a newline could fail (`(?!\\s)` at a value's end): their bodies may hold only
    literal characters other than a newline."""
    if "\\A" in pattern or "\\Z" in pattern:
        return False
    bodies = re.findall(r"\(\?<?!([^)]*)\)", pattern)
    if len(bodies) != pattern.count("(?!") + pattern.count("(?<!"):
        return False
    return all(not set(body) & set("\\[.()^$\n") for body in bodies)


class ClassIdValues:
    """Every class and id value of a tree, joined by newlines, read once for all the gates of a page. Deleting
    elements afterwards only removes values, so the gates stay sound on the pruned tree."""

    def __init__(self, tree: HtmlElement) -> None:
        self.text = "\n".join(_classes()(tree) + _ids()(tree))

    def may_select(self, xpath: XPath) -> bool:
        patterns = gate(xpath.path)
        return patterns is None or any(pattern.search(self.text) for pattern in patterns)


@functools.cache
def _classes() -> XPath:
    from lxml.etree import XPath

    # two plain XPaths, not a union, which would sort the attributes into document order; plain strings, not
    # lxml's "smart" strings that keep a link back to their element
    return XPath("descendant-or-self::*/@class", smart_strings=False)


@functools.cache
def _ids() -> XPath:
    from lxml.etree import XPath

    return XPath("descendant-or-self::*/@id", smart_strings=False)
