"""The expectations of Google's robots.txt reference test suite, as a table.

Ported from google/robotstxt `robots_test.cc` (commit 22b355f), Copyright 2019 Google LLC, licensed under the
Apache License, Version 2.0 (https://www.apache.org/licenses/LICENSE-2.0); modified: the C++ EXPECT_TRUE/EXPECT_FALSE
calls of `IsUserAgentAllowed(robotstxt, useragent, url)` became rows, each named by its gtest (`TEST(RobotsUnittest,
<name>)`). Parser-internal tests (line and directive counts, path extraction, pattern escaping) became the observable
behaviour they guard where there is one. Rows Google's matcher answers differently from a crawler that must obey
are in `SKIPPED`, each with the reason.
"""

from __future__ import annotations

# (test name, robots.txt, user agent, url, allowed)
Row = tuple[str, str, str, str, bool]

_FOO_DISALLOW = "user-agent: FooBot\ndisallow: /\n"
_GROUPS = ("allow: /foo/bar/\n\nuser-agent: FooBot\ndisallow: /\nallow: /x/\nuser-agent: BarBot\ndisallow: /\n"
           "allow: /y/\n\n\nallow: /w/\nuser-agent: BazBot\n\nuser-agent: FooBot\nallow: /z/\ndisallow: /\n")
_OTHER_RULES_1 = "User-agent: BarBot\nSitemap: https://foo.bar/sitemap\nUser-agent: *\nDisallow: /\n"
_OTHER_RULES_2 = "User-agent: FooBot\nInvalid-Unknown-Line: unknown\nUser-agent: *\nDisallow: /\n"
_GLOBAL = "user-agent: *\nallow: /\nuser-agent: FooBot\ndisallow: /\n"
_ONLY_SPECIFIC = "user-agent: FooBot\nallow: /\nuser-agent: BarBot\ndisallow: /\nuser-agent: BazBot\ndisallow: /\n"
_UP_TO_SPACE = "User-Agent: *\nDisallow: /\nUser-Agent: Foo Bar\nAllow: /x/\nDisallow: /\n"
_FISH = "user-agent: FooBot\ndisallow: /\nallow: /fish{}\n"
_PAGE = "http://foo.bar/x/page.html"

# Google's kMaxLineLen: a line is cut after 8 * 2083 bytes.
_MAX_LINE = 2083 * 8
_LONG = "/x/" + "a" * (_MAX_LINE - 3 - len("disallow: ") + 1 - 3)
_LONG_A = "/x/" + "a" * (_MAX_LINE - 3 - len("allow: ") + 1 - 3)
_LONG_B = "/x/" + "b" * (_MAX_LINE - 3 - len("allow: ") + 1 - 3)


def _rows(name: str, robots: str, agent: str, *checks: tuple[str, bool]) -> list[Row]:
    return [(name, robots, agent, url, allowed) for url, allowed in checks]


def _case_variants(name: str, line_names: tuple[str, str, str], agent_values: tuple[str, str, str],
                   agents: tuple[str, ...]) -> list[Row]:
    """REPLineNamesCaseInsensitive / UserAgentValueCaseInsensitive: three spellings, allowed /x/y, denied /a/b."""
    rows: list[Row] = []
    for agent in agents:
        for check_url, allowed in (("http://foo.bar/x/y", True), ("http://foo.bar/a/b", False)):
            for ua_name, value in zip(line_names, agent_values, strict=True):
                allow, disallow = {"USER-AGENT": ("ALLOW", "DISALLOW"), "user-agent": ("allow", "disallow"),
                                   "uSeR-aGeNt": ("AlLoW", "dIsAlLoW"), "User-Agent": ("Allow", "Disallow")}[ua_name]
                robots = f"{ua_name}: {value}\n{allow}: /x/\n{disallow}: /\n"
                rows.append((name, robots, agent, check_url, allowed))
    return rows


CASES: list[Row] = [
    *_rows("GoogleOnly_SystemTest", "", "FooBot", ("", True)),
    *_rows("GoogleOnly_SystemTest", _FOO_DISALLOW, "FooBot", ("", False)),
    *_rows("ID_LineSyntax_Line", _FOO_DISALLOW, "FooBot", ("http://foo.bar/x/y", False)),
    *_rows("ID_LineSyntax_Line", "foo: FooBot\nbar: /\n", "FooBot", ("http://foo.bar/x/y", True)),
    *_rows("ID_LineSyntax_Line", "user-agent FooBot\ndisallow /\n", "FooBot", ("http://foo.bar/x/y", False)),
    *_rows("ID_LineSyntax_Groups", _GROUPS, "FooBot", ("http://foo.bar/x/b", True), ("http://foo.bar/z/d", True),
           ("http://foo.bar/y/c", False), ("http://foo.bar/foo/bar/", False)),
    *_rows("ID_LineSyntax_Groups", _GROUPS, "BarBot", ("http://foo.bar/y/c", True), ("http://foo.bar/w/a", True),
           ("http://foo.bar/z/d", False), ("http://foo.bar/foo/bar/", False)),
    *_rows("ID_LineSyntax_Groups", _GROUPS, "BazBot", ("http://foo.bar/z/d", True),
           ("http://foo.bar/foo/bar/", False)),
    *_rows("ID_LineSyntax_Groups_OtherRules", _OTHER_RULES_1, "FooBot", ("http://foo.bar/", False)),
    *_rows("ID_LineSyntax_Groups_OtherRules", _OTHER_RULES_1, "BarBot", ("http://foo.bar/", False)),
    *_rows("ID_LineSyntax_Groups_OtherRules", _OTHER_RULES_2, "FooBot", ("http://foo.bar/", False)),
    *_rows("ID_LineSyntax_Groups_OtherRules", _OTHER_RULES_2, "BarBot", ("http://foo.bar/", False)),
    *_case_variants("ID_REPLineNamesCaseInsensitive", ("USER-AGENT", "user-agent", "uSeR-aGeNt"),
                    ("FooBot", "FooBot", "FooBot"), ("FooBot",)),
    *_case_variants("ID_UserAgentValueCaseInsensitive", ("User-Agent", "User-Agent", "User-Agent"),
                    ("FOO BAR", "foo bar", "FoO bAr"), ("Foo", "foo")),
    *_rows("GoogleOnly_AcceptUserAgentUpToFirstSpace", _UP_TO_SPACE, "Foo", ("http://foo.bar/x/y", True)),
    *_rows("ID_GlobalGroups_Secondary", "", "FooBot", ("http://foo.bar/x/y", True)),
    *_rows("ID_GlobalGroups_Secondary", _GLOBAL, "FooBot", ("http://foo.bar/x/y", False)),
    *_rows("ID_GlobalGroups_Secondary", _GLOBAL, "BarBot", ("http://foo.bar/x/y", True)),
    *_rows("ID_GlobalGroups_Secondary", _ONLY_SPECIFIC, "QuxBot", ("http://foo.bar/x/y", True)),
    *_rows("ID_AllowDisallow_Value_CaseSensitive", "user-agent: FooBot\ndisallow: /x/\n", "FooBot",
           ("http://foo.bar/x/y", False)),
    *_rows("ID_AllowDisallow_Value_CaseSensitive", "user-agent: FooBot\ndisallow: /X/\n", "FooBot",
           ("http://foo.bar/x/y", True)),
    *_rows("ID_LongestMatch", "user-agent: FooBot\ndisallow: /x/page.html\nallow: /x/\n", "FooBot", (_PAGE, False)),
    *_rows("ID_LongestMatch", "user-agent: FooBot\nallow: /x/page.html\ndisallow: /x/\n", "FooBot", (_PAGE, True),
           ("http://foo.bar/x/", False)),
    *_rows("ID_LongestMatch", "user-agent: FooBot\ndisallow: \nallow: \n", "FooBot", (_PAGE, True)),
    *_rows("ID_LongestMatch", "user-agent: FooBot\ndisallow: /\nallow: /\n", "FooBot", (_PAGE, True)),
    *_rows("ID_LongestMatch", "user-agent: FooBot\ndisallow: /x\nallow: /x/\n", "FooBot",
           ("http://foo.bar/x", False), ("http://foo.bar/x/", True)),
    *_rows("ID_LongestMatch", "user-agent: FooBot\ndisallow: /x/page.html\nallow: /x/page.html\n", "FooBot",
           (_PAGE, True)),
    *_rows("ID_LongestMatch", "user-agent: FooBot\nallow: /page\ndisallow: /*.html\n", "FooBot",
           ("http://foo.bar/page.html", False), ("http://foo.bar/page", True)),
    *_rows("ID_LongestMatch", "user-agent: FooBot\nallow: /x/page.\ndisallow: /*.html\n", "FooBot", (_PAGE, True),
           ("http://foo.bar/x/y.html", False)),
    *_rows("ID_LongestMatch", "User-agent: *\nDisallow: /x/\nUser-agent: FooBot\nDisallow: /y/\n", "FooBot",
           ("http://foo.bar/x/page", True), ("http://foo.bar/y/page", False)),
    *_rows("ID_Encoding", "User-agent: FooBot\nDisallow: /\nAllow: /foo/bar?qux=taz&baz=http://foo.bar?tar&par\n",
           "FooBot", ("http://foo.bar/foo/bar?qux=taz&baz=http://foo.bar?tar&par", True)),
    *_rows("ID_Encoding", "User-agent: FooBot\nDisallow: /\nAllow: /foo/bar/ツ\n", "FooBot",
           ("http://foo.bar/foo/bar/%E3%83%84", True)),
    *_rows("ID_Encoding", "User-agent: FooBot\nDisallow: /\nAllow: /foo/bar/%E3%83%84\n", "FooBot",
           ("http://foo.bar/foo/bar/%E3%83%84", True)),
    *_rows("ID_Encoding", "User-agent: FooBot\nDisallow: /\nAllow: /foo/bar/%62%61%7A\n", "FooBot",
           ("http://foo.bar/foo/bar/%62%61%7A", True)),
    *_rows("ID_SpecialCharacters", "User-agent: FooBot\nDisallow: /foo/bar/quz\nAllow: /foo/*/qux\n", "FooBot",
           ("http://foo.bar/foo/bar/quz", False), ("http://foo.bar/foo/quz", True),
           ("http://foo.bar/foo//quz", True), ("http://foo.bar/foo/bax/quz", True)),
    *_rows("ID_SpecialCharacters", "User-agent: FooBot\nDisallow: /foo/bar$\nAllow: /foo/bar/qux\n", "FooBot",
           ("http://foo.bar/foo/bar", False), ("http://foo.bar/foo/bar/qux", True),
           ("http://foo.bar/foo/bar/", True), ("http://foo.bar/foo/bar/baz", True)),
    *_rows("ID_SpecialCharacters", "User-agent: FooBot\n# Disallow: /\nDisallow: /foo/quz#qux\nAllow: /\n",
           "FooBot", ("http://foo.bar/foo/bar", True), ("http://foo.bar/foo/quz", False)),
    *_rows("GoogleOnly_IndexHTMLisDirectory", "User-Agent: *\nAllow: /allowed-slash/index.html\nDisallow: /\n",
           "foobot", ("http://foo.com/allowed-slash/", True), ("http://foo.com/allowed-slash/index.htm", False),
           ("http://foo.com/allowed-slash/index.html", True), ("http://foo.com/anyother-url", False)),
    *_rows("GoogleOnly_LineTooLong", f"user-agent: FooBot\ndisallow: {_LONG}/qux\n", "FooBot",
           ("http://foo.bar/fux", True)),
    *_rows("GoogleOnly_LineTooLong", f"user-agent: FooBot\ndisallow: /\nallow: {_LONG_A}/qux\nallow: {_LONG_B}/qux\n",
           "FooBot", ("http://foo.bar/", False), (f"http://foo.bar{_LONG_A}/qux", True)),
    *_rows("GoogleOnly_DocumentationChecks", _FISH.format(""), "FooBot", ("http://foo.bar/bar", False),
           ("http://foo.bar/fish", True), ("http://foo.bar/fish.html", True),
           ("http://foo.bar/fish/salmon.html", True), ("http://foo.bar/fishheads", True),
           ("http://foo.bar/fishheads/yummy.html", True), ("http://foo.bar/fish.html?id=anything", True),
           ("http://foo.bar/Fish.asp", False), ("http://foo.bar/catfish", False), ("http://foo.bar/?id=fish", False)),
    *_rows("GoogleOnly_DocumentationChecks", _FISH.format("*"), "FooBot", ("http://foo.bar/bar", False),
           ("http://foo.bar/fish", True), ("http://foo.bar/fish.html", True),
           ("http://foo.bar/fish/salmon.html", True), ("http://foo.bar/fishheads", True),
           ("http://foo.bar/fishheads/yummy.html", True), ("http://foo.bar/fish.html?id=anything", True),
           ("http://foo.bar/Fish.bar", False), ("http://foo.bar/catfish", False), ("http://foo.bar/?id=fish", False)),
    *_rows("GoogleOnly_DocumentationChecks", _FISH.format("/"), "FooBot", ("http://foo.bar/bar", False),
           ("http://foo.bar/fish/", True), ("http://foo.bar/fish/salmon", True), ("http://foo.bar/fish/?salmon", True),
           ("http://foo.bar/fish/salmon.html", True), ("http://foo.bar/fish/?id=anything", True),
           ("http://foo.bar/fish", False), ("http://foo.bar/fish.html", False),
           ("http://foo.bar/Fish/Salmon.html", False)),
    *_rows("GoogleOnly_DocumentationChecks", "user-agent: FooBot\ndisallow: /\nallow: /*.php\n", "FooBot",
           ("http://foo.bar/bar", False), ("http://foo.bar/filename.php", True),
           ("http://foo.bar/folder/filename.php", True), ("http://foo.bar/folder/filename.php?parameters", True),
           ("http://foo.bar//folder/any.php.file.html", True), ("http://foo.bar/filename.php/", True),
           ("http://foo.bar/index?f=filename.php/", True), ("http://foo.bar/php/", False),
           ("http://foo.bar/index?php", False), ("http://foo.bar/windows.PHP", False)),
    *_rows("GoogleOnly_DocumentationChecks", "user-agent: FooBot\ndisallow: /\nallow: /*.php$\n", "FooBot",
           ("http://foo.bar/bar", False), ("http://foo.bar/filename.php", True),
           ("http://foo.bar/folder/filename.php", True), ("http://foo.bar/filename.php?parameters", False),
           ("http://foo.bar/filename.php/", False), ("http://foo.bar/filename.php5", False),
           ("http://foo.bar/php/", False), ("http://foo.bar/filename?php", False),
           ("http://foo.bar/aaaphpaaa", False), ("http://foo.bar//windows.PHP", False)),
    *_rows("GoogleOnly_DocumentationChecks", "user-agent: FooBot\ndisallow: /\nallow: /fish*.php\n", "FooBot",
           ("http://foo.bar/bar", False), ("http://foo.bar/fish.php", True),
           ("http://foo.bar/fishheads/catfish.php?parameters", True), ("http://foo.bar/Fish.PHP", False)),
    *_rows("GoogleOnly_DocumentationChecks", "user-agent: FooBot\nallow: /p\ndisallow: /\n", "FooBot",
           ("http://example.com/page", True)),
    *_rows("GoogleOnly_DocumentationChecks", "user-agent: FooBot\nallow: /folder\ndisallow: /folder\n", "FooBot",
           ("http://example.com/folder/page", True)),
    *_rows("GoogleOnly_DocumentationChecks", "user-agent: FooBot\nallow: /page\ndisallow: /*.htm\n", "FooBot",
           ("http://example.com/page.htm", False)),
    *_rows("GoogleOnly_DocumentationChecks", "user-agent: FooBot\nallow: /$\ndisallow: /\n", "FooBot",
           ("http://example.com/", True), ("http://example.com/page.html", False)),
]

# Parser-internal expectations, ported as the behaviour they guard: every line-ending style (5 files, 2 counts each)
# keeps `foo`'s Allow and `bar`'s Disallow; a full or partial UTF-8 BOM is skipped (2 counts each), a broken one
# or one mid-file costs exactly the line it sits on (2 counts each); a Sitemap line anywhere is read.
_LINES = ["User-Agent: foo", "Allow: /some/path", "User-Agent: bar", "", "", "Disallow: /"]
LINE_ENDING_FILES: dict[str, bytes] = {
    "unix": "\n".join(_LINES).encode() + b"\n",
    "dos": "\r\n".join(_LINES).encode() + b"\r\n",
    "mac": "\r".join(_LINES).encode() + b"\r",
    "no_final_newline": "\n".join(_LINES).encode(),
    "mixed": b"User-Agent: foo\nAllow: /some/path\r\nUser-Agent: bar\n\r\n\nDisallow: /",
}
# (file, foo may fetch /AnyValue, foo may fetch /other)
_FOO = b"User-Agent: foo\nDisallow: /\nAllow: /AnyValue\n"
BOM_FILES: list[tuple[bytes, bool, bool]] = [
    (b"\xef\xbb\xbf" + _FOO, True, False),
    (b"\xef\xbb" + _FOO, True, False),  # partial marks are skipped too
    (b"\xef" + _FOO, True, False),
    (b"\xef\x11\xbf" + _FOO, True, True),  # not a mark: the user-agent line is garbage, so no group is foo's
    (b"User-Agent: foo\nDisallow: /\n\xef\xbb\xbfAllow: /AnyValue\n", False, False),  # mid-file: that line is lost
]
SITEMAP_FILES: list[str] = [
    "User-Agent: foo\nAllow: /some/path\nUser-Agent: bar\n\n\nSitemap: http://foo.bar/sitemap.xml\n",
    "Sitemap: http://foo.bar/sitemap.xml\nUser-Agent: foo\nAllow: /some/path\nUser-Agent: bar\n\n\n",
]
# ID_VerifyValidUserAgentsToObey: tokens a crawler may present (ours is checked before any robots.txt is read).
VALID_TOKENS = ["Foobot", "Foobot-Bar", "Foo_Bar"]
INVALID_TOKENS = ["", "ツ", "Foobot*", " Foobot ", "Foobot/2.1", "Foobot Bar"]

# Rows of robots_test.cc not in CASES, with why they do not apply to a crawler that obeys robots.txt.
SKIPPED: dict[str, tuple[int, str]] = {
    "GoogleOnly_SystemTest: empty user agent (2 rows)": (
        2, "a crawler always presents its product token; an empty one is refused by check_agent_token"),
    "GoogleOnly_AcceptUserAgentUpToFirstSpace: agent 'Foo Bar' (1 row)": (
        1, "'Foo Bar' is not a valid token and is refused by check_agent_token before matching"),
    "ID_VerifyValidUserAgentsToObey: absl::string_view() (1 row)": (
        1, "a null string_view has no Python counterpart; the empty string is ported"),
    "ID_Encoding: unencoded non-ASCII URL /foo/bar/ツ denied (2 rows)": (
        2, "Google leaves percent-encoding the URL to the caller; a crawler requests /foo/bar/%E3%83%84 for it "
           "(httpx encodes), which the same rules allow, and the encoded URL's row is ported"),
    "ID_Encoding: /foo/bar/baz against Allow /foo/bar/%62%61%7A (1 row)": (
        1, "RFC 3986 makes %62%61%7A and baz the same URL; Google's own comment says its literal-only match "
           "'should not be relied on'"),
    "GoogleOnly_LineTooLong: URLs past the 16,664-byte line cut (2 rows)": (
        2, "Google-specific truncation of overlong lines (not in RFC 9309); the rows inside the limit are ported"),
    "TestGetPathParamsQuery (19 rows)": (
        19, "tests Google's internal URL-to-path helper; the crawler hands full URLs to the matcher"),
    "TestMaybeEscapePattern (4 rows)": (
        4, "tests Google's internal pattern escaper; encoding is covered by the ported ID_Encoding rows"),
}
