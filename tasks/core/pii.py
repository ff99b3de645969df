"""PII scrubbing for curated text: e-mail addresses, IP addresses, phone numbers and credit-card numbers.

`scrub_pii(text)` replaces each match with a fixed placeholder (`<EMAIL>`, `<IP_ADDRESS>`, `<PHONE>`,
`<CREDIT_CARD>`) and returns the counts per kind; `PIIScrubber` is the datatrove formatter step that runs it on every
document and adds the counts to the step's stats (`pii_email`, `pii_ip`, …). Placeholders, unlike datatrove's fake
replacement addresses, make scrubbed spans visible to anyone reading the shards.

Precision choices: IPs count only when they are valid and globally routable (127.0.0.1 or 192.168.x.x in
documentation are not personal data, as in datatrove's PIIFormatter); card numbers must pass the Luhn check; phone
numbers need separators between digit groups and 10 to 15 digits, so versions, dates and bare integers stay.
"""

from __future__ import annotations

import ipaddress
import re

from datatrove.pipeline.formatters.base import BaseFormatter

PLACEHOLDERS = {"email": "<EMAIL>", "credit_card": "<CREDIT_CARD>", "ip": "<IP_ADDRESS>", "phone": "<PHONE>"}

_EMAIL = re.compile(
    r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b"
)
# 13-19 digits, optionally grouped by single spaces or dashes (4-4-4-4, 4-6-5 for Amex).
_CARD = re.compile(r"(?<![\d.-])\d(?:[ -]?\d){12,18}(?![\d-]|\.\d)")
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\d|\.\d)")
# Optional +country code, optional (area), then digit groups (1-4, then 2-8 digits) with separators; not followed by
# ":" so log timestamps ("2005-03-23 23:47:11") stay.
_PHONE = re.compile(
    r"(?<![\w.+/-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,8}){1,4}(?![\w:-]|\.\d)"
)
_DATE_START = re.compile(r"(?:19|20)\d\d[-./ ]\d\d[-./ ]\d\d")


def luhn_ok(number: str) -> bool:
    """True when `number` passes the Luhn checksum (all real card numbers do) and starts like a card (2-6)."""
    digits = [int(c) for c in number if c.isdigit()]
    # Issuer ranges start with 2-6 (Mastercard, Amex/Diners/JCB, Visa, Mastercard, Discover); this also rules out
    # all-zero padding and timestamps, which pass Luhn trivially.
    if not 13 <= len(digits) <= 19 or not 2 <= digits[0] <= 6:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_public_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_global
    except ValueError:
        return False


def _is_phone(text: str) -> bool:
    n_digits = sum(c.isdigit() for c in text)
    has_plus_or_paren = text.startswith("+") or "(" in text
    # Without a country code or (area) a phone needs at least 3 groups, so "2023-01 15" or "100 200" stay.
    n_groups = len(re.findall(r"\d+", text))
    if _DATE_START.match(text):
        return False
    return 10 <= n_digits <= 15 and (has_plus_or_paren or n_groups >= 3)


def scrub_pii(text: str, kinds: tuple[str, ...] = ("email", "credit_card", "ip", "phone")) -> tuple[str, dict[str, int]]:
    """Replace the PII `kinds` in `text` with placeholders; return the new text and counts per kind.

    Order matters: e-mails first (they contain digits), cards before phones (a card number looks like a long phone
    number), IPs before phones (dotted quads look like dotted phone numbers).
    """
    counts = dict.fromkeys(kinds, 0)
    rules = {
        "email": (_EMAIL, None),
        "credit_card": (_CARD, luhn_ok),
        "ip": (_IPV4, _is_public_ip),
        "phone": (_PHONE, _is_phone),
    }
    for kind in ("email", "credit_card", "ip", "phone"):
        if kind not in counts:
            continue
        pattern, valid = rules[kind]

        def replace(match: re.Match[str], kind: str = kind, valid=valid) -> str:
            if valid is not None and not valid(match.group(0)):
                return match.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        text = pattern.sub(replace, text)
    return text, counts


class PIIScrubber(BaseFormatter):
    """datatrove formatter: scrub PII in every document; stats `pii_<kind>` count replacements per kind."""

    name = "🔏 PII scrubber"

    def __init__(self, kinds: tuple[str, ...] = ("email", "credit_card", "ip", "phone")):
        super().__init__()
        unknown = set(kinds) - set(PLACEHOLDERS)
        if unknown:
            raise ValueError(f"PIIScrubber: unknown PII kinds {sorted(unknown)}; choose from {sorted(PLACEHOLDERS)}")
        self.kinds = tuple(kinds)

    def format(self, text: str) -> str:
        text, counts = scrub_pii(text, self.kinds)
        for kind, n in counts.items():
            if n:
                self.stat_update(f"pii_{kind}", value=n)
        if any(counts.values()):
            self.stat_update("docs_with_pii")
        return text
