"""robots.txt rules for one host and one crawler, per RFC 9309, on top of protego (the parser Scrapy uses).

protego does the matching: longest match wins, Allow wins a tie, `*` and `$`, percent-encoding of both sides. This
module adds what RFC 9309 leaves to the crawler and what protego does differently:
- group selection (§2.2.1): a group applies when its user-agent value, up to the first space and case-insensitively,
  *equals* our product token; else the `*` group; else no rules. protego matches by substring (`foo` would rule
  `foobot`), so other groups' user-agent lines are renamed before parsing to a name no valid token can contain;
- the body is cut at `MAX_ROBOTS_BYTES` (500 KiB, §2.5) on a line boundary, a UTF-8 byte-order mark (or a
  truncated one) is skipped, undecodable bytes are replaced;
- Crawl-delay (and Request-rate) of the chosen group, capped by the caller so a robots.txt cannot stall a crawl;
- the fetch status decides before any parsing (§2.3.1): 4xx means no rules, 5xx or unreachable means disallow all
  (see `tasks.collect.politeness`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protego import Protego

MAX_ROBOTS_BYTES = 500 * 1024
_TOKEN = re.compile(r"[A-Za-z_-]+")
_UA_LINE = re.compile(r"^(\s*user[- ]?agent(?:\s*:\s*|\s+))(\S*)", re.I)
# Lines RFC 9309 defines (and the extensions a crawler reads); any other line is dropped before protego sees it,
# since protego lets an unknown line end a group and Google's reference (and §2.2.4) says it must not.
# The misspellings of Disallow are those Google's and protego's parsers honour: an opt-out must not hinge on spelling.
_KNOWN_LINE = re.compile(r"^\s*(user[- ]?agent|allow|disallow|dissallow|dissalow|disalow|diasllow|disallaw|sitemaps?"
                         r"|site-map|crawl[- ]delay|request[- ]rate)(\s*:|\s)", re.I)
_OTHER_AGENT = "0"  # contains a digit, so it never equals (or, for protego, occurs in) a valid product token
_BOMS = (b"\xef\xbb\xbf", b"\xef\xbb", b"\xef")


def check_agent_token(token: str) -> str:
    """The product token robots.txt groups are matched against; RFC 9309 allows only letters, `_` and `-`."""
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"robots.txt user-agent token {token!r} is not valid: RFC 9309 allows only letters, '_' "
                         "and '-' (set crawl.user_agent to start with one, like 'lmforge/0.1 (+url)')")
    return token.lower()


@dataclass
class RobotsRules:
    """The rules of one robots.txt for one product token. `RobotsRules()` (no parser) allows everything."""

    agent: str = ""
    parser: Protego | None = None
    crawl_delay: float | None = None
    sitemaps: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes | str, agent: str, max_delay_s: float = float("inf")) -> RobotsRules:
        """Rules of `body` for `agent` (a product token, see `check_agent_token`); delays capped at `max_delay_s`."""
        from protego import Protego

        agent = check_agent_token(agent)
        parser = Protego.parse(_for_protego(_decode(body), agent))
        delay = parser.crawl_delay(agent)
        rate = parser.request_rate(agent)
        if rate is not None and rate.requests:
            delay = max(delay or 0.0, rate.seconds / rate.requests)
        if delay is not None:
            delay = min(float(delay), max_delay_s)
        return cls(agent, parser, delay, list(parser.sitemaps))

    def allowed(self, url: str) -> bool:
        return self.parser is None or self.parser.can_fetch(url, self.agent)


def _decode(body: bytes | str) -> str:
    if isinstance(body, str):
        body = body.encode("utf-8")
    if len(body) > MAX_ROBOTS_BYTES:
        body = body[:MAX_ROBOTS_BYTES]
        body = body[: max(body.rfind(b"\n"), body.rfind(b"\r")) + 1]  # a cut line could change its meaning
    for bom in _BOMS:
        if body.startswith(bom):
            body = body[len(bom):]
            break
    return body.decode("utf-8", errors="replace")


def _for_protego(text: str, agent: str) -> str:
    """Drop unknown lines, and rename every user-agent value that is neither `*` nor exactly `agent` (up to its
    first space), so protego's substring matching cannot pick a group RFC 9309 does not; grouping is unchanged."""
    lines = [line for line in text.splitlines() if _KNOWN_LINE.match(line)]
    for i, line in enumerate(lines):
        match = _UA_LINE.match(line)
        if match is None or not match.group(2):
            continue
        value = match.group(2).split("#")[0].lower()
        if value not in ("*", agent):
            lines[i] = match.group(1) + _OTHER_AGENT
        else:  # drops what follows a space ("Foo Bar" -> "foo"), as Google's parser does
            lines[i] = match.group(1) + value
    return "\n".join(lines)
