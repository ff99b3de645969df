"""PII scrubbing for curated text: e-mail, IBAN, payment card, US SSN, IP (v4 and v6) and phone numbers.

`scrub_pii(text)` replaces each match with a fixed placeholder (`<EMAIL>`, `<IBAN>`, `<CREDIT_CARD>`, `<SSN>`,
`<IP_ADDRESS>`, `<PHONE>`) and returns the counts per kind; `PIIScrubber` is the datatrove formatter step that runs
it on every document and adds the counts to the step's stats (`pii_email`, `pii_ip`, …). Placeholders, unlike
datatrove's fake replacement addresses, make scrubbed spans visible to anyone reading the shards.

Each kind is found by a cheap candidate regex and confirmed by the validator made for the format
(`tasks.core.pii_detect`): libphonenumber for phones, IIN ranges + Luhn for cards, mod-97 for IBANs, `ipaddress`
for IPs. IPs count when they can name a host, private ranges included (`ip_scope="host"`); loopback, "this
network" and the documentation blocks never do. `ip_scope="global"` keeps only globally routable ones, as datatrove's
PIIFormatter does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from datatrove.pipeline.formatters.base import BaseFormatter

from tasks.core import pii_detect as d

PLACEHOLDERS = {
    "email": "<EMAIL>",
    "iban": "<IBAN>",
    "credit_card": "<CREDIT_CARD>",
    "ssn": "<SSN>",
    "ip": "<IP_ADDRESS>",
    "phone": "<PHONE>",
}
KINDS, DEFAULT_REGIONS, IP_SCOPES, check_regions = d.KINDS, d.DEFAULT_REGIONS, d.IP_SCOPES, d.check_regions

luhn_ok = d.luhn_ok


@functools.cache
def _finders(regions: tuple[str, ...], ip_scope: str) -> dict[str, Callable[[str], Iterator[tuple[int, int]]]]:
    return {
        "email": d.email_spans,
        "iban": d.iban_spans,
        "credit_card": d.card_spans,
        "ssn": d.regex_spans(d.SSN, d.is_ssn),
        "ip": lambda text: d.ip_spans(text, ip_scope),
        "phone": lambda text: d.phone_spans(text, regions),
    }


def check_kinds(kinds: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown PII kinds {sorted(unknown)}; choose from {list(KINDS)}")
    return tuple(kind for kind in KINDS if kind in kinds)


def check_ip_scope(scope: str) -> str:
    if scope not in IP_SCOPES:
        raise ValueError(f"unknown IP scope {scope!r}; choose from {list(IP_SCOPES)}")
    return scope


def scrub_pii(
    text: str, kinds: tuple[str, ...] = KINDS, regions: tuple[str, ...] = DEFAULT_REGIONS, ip_scope: str = "host"
) -> tuple[str, dict[str, int]]:
    """Replace the PII `kinds` in `text` with placeholders; return the new text and counts per kind.

    Kinds run in `KINDS` order on the text the previous kinds left, so a span is only ever claimed once.
    """
    finders = _finders(regions, check_ip_scope(ip_scope))
    counts = dict.fromkeys(check_kinds(kinds), 0)
    for kind in KINDS:
        if kind not in counts:
            continue
        spans = sorted(set(finders[kind](text)))
        if not spans:
            continue
        parts, last = [], 0
        for start, end in spans:
            if start < last:  # overlapping readings of one number (an IPv4 inside an IPv6 form)
                continue
            parts += [text[last:start], PLACEHOLDERS[kind]]
            last = end
            counts[kind] += 1
        text = "".join(parts) + text[last:]
    return text, counts


class PIIScrubber(BaseFormatter):
    """datatrove formatter: scrub PII in every document; stats `pii_<kind>` count replacements per kind."""

    name = "🔏 PII scrubber"

    def __init__(
        self, kinds: tuple[str, ...] = KINDS, regions: tuple[str, ...] = DEFAULT_REGIONS, ip_scope: str = "host"
    ):
        super().__init__()
        self.kinds = check_kinds(kinds)
        self.regions = check_regions(regions)
        self.ip_scope = check_ip_scope(ip_scope)

    def format(self, text: str) -> str:
        text, counts = scrub_pii(text, self.kinds, self.regions, self.ip_scope)
        for kind, n in counts.items():
            if n:
                self.stat_update(f"pii_{kind}", value=n)
        if any(counts.values()):
            self.stat_update("docs_with_pii")
        return text
