"""robots.txt per RFC 9309: Google's reference suite as a table (`robots_cases.py`), the 500 KiB cap and the
Crawl-delay cap on `RobotsRules`, and on a real server on 127.0.0.1 that a disallowed URL is never requested and
that a 4xx robots.txt means allow all, a 5xx one disallow all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_site import FaultSite
from robots_cases import (
    BOM_FILES,
    CASES,
    INVALID_TOKENS,
    LINE_ENDING_FILES,
    SITEMAP_FILES,
    SKIPPED,
    VALID_TOKENS,
)
from test_crawl_faults import crawl

from tasks.collect.robots import MAX_ROBOTS_BYTES, RobotsRules, check_agent_token

GOOGLE_EXPECTATIONS = 201  # robots_test.cc: 145 IsUserAgentAllowed, 11 token checks, 22 counts, 19 paths, 4 escapes


@pytest.mark.parametrize(("name", "robots", "agent", "url", "allowed"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_google_reference_case(name: str, robots: str, agent: str, url: str, allowed: bool):
    assert RobotsRules.parse(robots, agent).allowed(url) is allowed


def test_every_reference_expectation_is_ported_or_skipped_with_a_reason():
    ported = len(CASES) + 2 * len(LINE_ENDING_FILES) + 2 * len(BOM_FILES) + len(SITEMAP_FILES) \
        + len(VALID_TOKENS) + len(INVALID_TOKENS) + 1  # "Foobot Bar" is checked twice in robots_test.cc
    skipped = sum(n for n, _ in SKIPPED.values())
    print(f"robots_test.cc: {ported} expectations ported, {skipped} skipped as not applicable")
    assert (len(CASES), ported, skipped) == (137, 169, 32) and ported + skipped == GOOGLE_EXPECTATIONS
    assert all(reason for _, reason in SKIPPED.values())


@pytest.mark.parametrize("kind", sorted(LINE_ENDING_FILES))
def test_every_line_ending_style_is_read(kind: str):
    body = LINE_ENDING_FILES[kind]
    assert RobotsRules.parse(body, "foo").allowed("http://foo.bar/some/path")
    assert not RobotsRules.parse(body, "bar").allowed("http://foo.bar/some/path")


@pytest.mark.parametrize(("body", "any_value", "other"), BOM_FILES)
def test_byte_order_marks_are_skipped(body: bytes, any_value: bool, other: bool):
    rules = RobotsRules.parse(body, "foo")
    assert (rules.allowed("http://foo.bar/AnyValue"), rules.allowed("http://foo.bar/other")) == (any_value, other)


@pytest.mark.parametrize("body", SITEMAP_FILES)
def test_sitemap_lines_are_read_anywhere(body: str):
    assert RobotsRules.parse(body, "foo").sitemaps == ["http://foo.bar/sitemap.xml"]


def test_only_valid_product_tokens_are_accepted():
    assert [check_agent_token(t) for t in VALID_TOKENS] == ["foobot", "foobot-bar", "foo_bar"]
    for token in INVALID_TOKENS:
        with pytest.raises(ValueError, match="only letters"):
            check_agent_token(token)


def test_a_group_named_by_a_prefix_of_our_token_is_not_ours():
    # RFC 9309 matches the product token; protego alone would let `lm` rule `lmforge`.
    robots = "User-agent: lm\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    assert RobotsRules.parse(robots, "lmforge").allowed("http://x.test/page")


def test_misspelled_disallow_and_unknown_lines():
    robots = "User-agent: *\nDissallow: /a/\nDisalow: /b/\nNoindex: /c/\nDisallow: /d/\n"
    rules = RobotsRules.parse(robots, "lmforge")
    assert [rules.allowed(f"http://x.test/{p}/1") for p in "abcd"] == [False, False, True, False]


def test_rules_past_500_kib_are_not_read_and_the_cut_line_is_dropped():
    head = "User-agent: *\nDisallow: /early/\n"
    head += "#" * (MAX_ROBOTS_BYTES - len(head) - len("Disallow: /") - 1) + "\n"
    rules = RobotsRules.parse(head + "Disallow: /late/\n" * 100, "lmforge")  # the cap cuts it to "Disallow: /"
    assert not rules.allowed("http://x.test/early/1")
    assert rules.allowed("http://x.test/late/1") and rules.allowed("http://x.test/other")


def test_crawl_delay_and_request_rate_are_capped():
    assert RobotsRules.parse("User-agent: *\nCrawl-delay: 0.5\n", "lmforge", 30).crawl_delay == 0.5
    assert RobotsRules.parse("User-agent: *\nCrawl-delay: 86400\n", "lmforge", 30).crawl_delay == 30
    assert RobotsRules.parse("User-agent: *\nRequest-rate: 1/10s\n", "lmforge", 30).crawl_delay == 10
    assert RobotsRules.parse("User-agent: other\nCrawl-delay: 5\n", "lmforge", 30).crawl_delay is None


# --- on a real server -------------------------------------------------------------------------------------------

def _crawl_with_robots(tmp_path: Path, robots: str | None, status: int, paths: list[str]) -> tuple[dict, FaultSite]:
    site = FaultSite(robots=robots, robots_status=status)
    for path in paths:
        site.pages.setdefault(path, f"<html><title>{path}</title><body><p>{path} " + "words " * 60 + "</p></html>")
    try:
        stats, _, _ = crawl(tmp_path, [f"{site.base}{p}" for p in paths], max_retries=0)
    finally:
        site.close()
    return stats, site


def test_longest_match_and_wildcards_decide_what_is_requested(tmp_path: Path):
    # urllib.robotparser took the first matching line (Allow: /) and ignored `*` and `$`.
    robots = "User-agent: *\nAllow: /\nDisallow: /private/\nDisallow: /*.php$\nAllow: /private/open\n"
    paths = ["/private/a", "/index.php", "/index.php?x=1", "/private/open", "/public"]
    stats, site = _crawl_with_robots(tmp_path, robots, 200, paths)
    assert set(site.paths()) == {"/robots.txt", "/index.php?x=1", "/private/open", "/public"}
    assert stats["outcomes"] == {"fetched": 3, "robots_denied": 2}


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_robots_txt_4xx_means_allow_all(tmp_path: Path, status: int):
    stats, site = _crawl_with_robots(tmp_path, "User-agent: *\nDisallow: /\n", status, ["/a", "/b"])
    assert sorted(site.paths()) == ["/a", "/b", "/robots.txt"] and stats["outcomes"] == {"fetched": 2}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_robots_txt_5xx_or_429_means_disallow_all(tmp_path: Path, status: int):
    stats, site = _crawl_with_robots(tmp_path, "User-agent: *\nAllow: /\n", status, ["/a", "/b"])
    assert site.paths() == ["/robots.txt"] and stats["errors"] == {"robots_unavailable": 2}
