"""PII detectors, one per kind: a cheap regex proposes candidates, a validator made for the format decides.

- `email`: RFC 5322-style local part @ dotted domain (datatrove's PIIFormatter pattern, without IP-literal hosts),
  searched outwards from each "@".
- `iban`: ISO 13616, compact or printed in groups of four, with mod-97 check digits and a registered country code
  (`is_iban`).
- `credit_card`: 12-19 digits, bare or grouped 4-4-4-4(-3) / 4-6-5 / 4-6-4; the number must start with a payment
  scheme's IIN range at a length that scheme issues (`CARD_SCHEMES`) and pass the Luhn check.
- `ssn`: US Social Security numbers written `AAA-GG-SSSS`; `stdnum.us.ssn` rejects never-issued areas (000, 666,
  9xx), zero groups and serials, and the numbers known from advertising (078-05-1120). ITINs, the 9xx numbers the
  IRS issues in the same format (`stdnum.us.itin`), count too.
- `ip`: IPv4 dotted quads and IPv6 in all its textual forms (compressed, IPv4-embedded, zone ids), validated by
  `ipaddress`. Which addresses count is the `IP_SCOPES` choice (`personal_ip`): by default every address that can
  name a host, private ranges included. Not hosts: netmasks (255.255.255.0), a CIDR block's network address
  ("10.0.0.0/8"), a dotted quad named as a version or section ("v1.2.3.4", "Section 4.8.3.1") or opening a line
  as a section number ("4.8.3.1. Title"), a Python slice (`a[1::2]`).
- `phone`: libphonenumber's `PhoneNumberMatcher` over each candidate run of digits, for a list of default regions
  and, where a phone cue stands next to the number, every region (`tasks.core.pii_phone`, with the leniency and
  the distractor rules that keep dates, versions, ISBNs, prices and coordinates).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Literal, get_args

# Phones have their own module; the scrubber and the curate config read these names here, with the other kinds'.
from tasks.core.pii_phone import DEFAULT_REGIONS, check_regions, named_otherwise, phone_spans  # noqa: F401

# Order matters: e-mails first (they contain digits), IBANs and cards before phones (long digit runs look like
# phone numbers), SSNs before phones (AAA-GG-SSSS is a possible 9-digit number), IPs before phones (dotted quads).
# The Literal is what the curate config validates `pii_kinds` against; KINDS is derived from it (one list).
PIIKind = Literal["email", "iban", "credit_card", "ssn", "ip", "phone"]
KINDS: tuple[PIIKind, ...] = get_args(PIIKind)
# E-mail: datatrove's PIIFormatter pattern (RFC 5322 local part, dotted domain), found from each "@" outwards: the
# pattern run from every word boundary is quadratic on long runs of local-part characters (base64 data: 100 KB took
# 16 s); anchored, each "@" costs at most the 64 + 255 characters RFC 5321 allows around it.
_LOCAL_CHARS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_EMAIL_LOCAL = re.compile(rf"[A-Za-z0-9]{_LOCAL_CHARS}*(?:\.{_LOCAL_CHARS}+)*$")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b")


def email_spans(text: str) -> Iterator[tuple[int, int]]:
    at = text.find("@")
    while at >= 0:
        domain = _EMAIL_DOMAIN.match(text, at + 1, min(len(text), at + 256))
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at) if domain else None
        if local and domain:
            yield local.start(), domain.end()
        at = text.find("@", at + 1)


# Country code, check digits, then the BBAN either compact or in print groups of four (ISO 13616 paper format).
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{10,30}|(?: [A-Z0-9]{1,4}){3,8})\b")
# Bare 12-19 digits, or the groupings issuers print: 4-4-4(-1..4(-1..3)) and Amex/Diners 4-6-5 / 4-6-4.
CARD = re.compile(
    r"(?<![\w.,+-])(?:\d{12,19}|\d{4}([ -])\d{4}\1\d{4}(?:\1\d{1,4}(?:\1\d{1,3})?)?|\d{4}([ -])\d{6}\2\d{4,5})"
    r"(?![\w-]|[.,]\d)"
)
SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\d|\.\d)")
# Hex groups with at least two colons, optionally ending in a dotted quad or a %zone; `ipaddress` decides.
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%\w+)?"
                  r"(?![\w:]|\.\w)")

# Payment card schemes: (first, last) IIN prefix range (compared on the first len(str(first)) digits) and the
# lengths the scheme issues. From the schemes' published ranges as collected on Wikipedia's "Payment card number".
CARD_SCHEMES: dict[str, list[tuple[int, int, tuple[int, ...]]]] = {
    "visa": [(4, 4, (13, 16, 19))],
    "mastercard": [(51, 55, (16,)), (2221, 2720, (16,))],
    "amex": [(34, 34, (15,)), (37, 37, (15,))],
    "discover": [(6011, 6011, tuple(range(16, 20))), (644, 649, tuple(range(16, 20))), (65, 65, tuple(range(16, 20))),
                 (622126, 622925, tuple(range(16, 20)))],
    "diners": [(300, 305, tuple(range(14, 20))), (3095, 3095, tuple(range(14, 20))), (36, 36, tuple(range(14, 20))),
               (38, 39, tuple(range(14, 20)))],
    # JCB issues 3528-3589; the rest of the 35 block is issued by no one, so a Luhn-valid number there is a card
    # (or made to look like one). The 15-digit 1800 and 2131 ranges are JCB's older numbers.
    "jcb": [(35, 35, tuple(range(16, 20))), (1800, 1800, (15,)), (2131, 2131, (15,))],
    "unionpay": [(62, 62, tuple(range(16, 20))), (81, 81, tuple(range(16, 20)))],
    "maestro": [(50, 50, tuple(range(12, 20))), (56, 69, tuple(range(12, 20)))],
    "mir": [(2200, 2204, tuple(range(16, 20)))],
    "rupay": [(60, 60, (16,)), (82, 82, (16,)), (508, 508, (16,)), (353, 353, (16,)), (356, 356, (16,))],
    "verve": [(506099, 506198, (16, 18, 19)), (650002, 650027, (16, 18, 19))],
    "troy": [(9792, 9792, (16,))],
    "uatp": [(1, 1, (15,))],
}


def luhn_ok(number: str) -> bool:
    """True when the digits of `number` pass the Luhn checksum (every payment card number does)."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return bool(digits) and total % 10 == 0


def card_scheme(number: str) -> str | None:
    """The payment scheme whose IIN range and length fit `number` (digits, separators ignored), else None."""
    digits = "".join(c for c in number if c.isdigit())
    for scheme, ranges in CARD_SCHEMES.items():
        for first, last, lengths in ranges:
            if len(digits) in lengths and first <= int(digits[: len(str(first))]) <= last:
                return scheme
    return None


def is_card(text: str) -> bool:
    """A payment card number: a scheme's IIN range at one of its lengths, and a valid Luhn check digit.

    The IIN ranges also keep zero padding and timestamps out, which pass Luhn trivially.
    """
    return card_scheme(text) is not None and luhn_ok(text)


def card_spans(text: str) -> Iterator[tuple[int, int]]:
    for match in CARD.finditer(text):
        if is_card(match.group(0)) and not named_otherwise(text, match.start()):
            yield match.span()


# Scope "host": every address that can name a machine. Private ranges count: 10.0.4.17 or fd12:3456::7 in a log or
# a forum post names a machine on somebody's network, and a link-local IPv6 address often embeds the interface's
# MAC. `_NO_HOST` names no one's host: "this network", loopback, the limited broadcast, IPv6's reserved ::/8
# (unspecified, loopback, the deprecated IPv4-compatible form; it is also what Python slices such as `a[1::2]`
# parse as), the discard prefix, and the documentation blocks (RFC 1122, 919, 4291, 6666, 5737, 3849, 9637).
# Scope "global": only globally routable addresses, as datatrove's PIIFormatter (`only_remove_public_ips`); it
# misses 7.5 % of uniformly drawn IPv4 addresses (240/4 alone is 6.25 %).
IPScope = Literal["host", "global"]
IP_SCOPES: tuple[IPScope, ...] = get_args(IPScope)
_NO_HOST = tuple(ipaddress.ip_network(block) for block in (
    "0.0.0.0/8", "127.0.0.0/8", "255.255.255.255/32", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
    "::/8", "100::/64", "2001:db8::/32", "3fff::/20",
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SUBSCRIPT = re.compile(r"[\w)\]]\[$")  # items[256::2] is a slice; an address in brackets follows "/", "@" or a space
# Dotted quads that number something else: "version 10.0.0.1", "v1.2.3.4", "Section 4.8.3.1". Not `named_otherwise`:
# its "3:" (a time) and "id" would keep "Server 3: 10.0.0.5" and "client id 10.0.0.5".
_NAMED_BEFORE = re.compile(
    r"(?:\b(?:v|ver|version|build|release|rev|revision|firmware|section|sec|chapter|ch|figure|fig|table|appendix|"
    r"step|clause|paragraph|para)|§)\.?:?\s*$",
    re.IGNORECASE,
)
_PREFIX_LENGTH = re.compile(r"/(\d{1,3})(?!\d)")


def personal_ip(text: str, scope: str = "host") -> bool:
    """`text` is an IP address that is personal data under `scope` (see `IP_SCOPES`); an IPv4 address wrapped in
    IPv6 (mapped, NAT64) is judged as itself."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in _NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in block for block in _NO_HOST) or _netmask(address):
        return False
    return scope != "global" or address.is_global


def _netmask(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """255.255.255.0, ffff:ffff:ffff:ffff:: (ones, then zeros, at least 8 ones): a mask, no host."""
    width = address.max_prefixlen
    host_bits = ~int(address) & ((1 << width) - 1)
    return host_bits & (host_bits + 1) == 0 and int(address) >> (width - 8) == 0xFF


def _network(text: str, match: re.Match) -> bool:
    """The address is the network of the CIDR prefix after it (`192.168.1.0/24`, `2002::/16`): a block, no host."""
    prefix = _PREFIX_LENGTH.match(text, match.end())
    if not prefix:
        return False
    try:
        block = ipaddress.ip_network(f"{match.group(0)}/{prefix.group(1)}")  # strict: raises if host bits are set
    except ValueError:
        return False
    return block.num_addresses > 1  # 8.8.8.8/32 is one host


def _section_number(text: str, match: re.Match) -> bool:
    """`4.8.3.1. Title` opening a line numbers a section (Debian's and Sphinx's manuals print them so)."""
    line_start = text.rfind("\n", 0, match.start()) + 1
    return text.startswith(".", match.end()) and not text[line_start : match.start()].strip()


def ip_spans(text: str, scope: str = "host") -> Iterator[tuple[int, int]]:
    for match in IPV6.finditer(text):
        start = match.start()
        if (personal_ip(match.group(0), scope) and not _SUBSCRIPT.match(text, max(0, start - 2), start)
                and not _network(text, match)):
            yield match.span()
    for match in IPV4.finditer(text):
        start = match.start()
        if (personal_ip(match.group(0), scope) and not _NAMED_BEFORE.search(text, max(0, start - 12), start)
                and not _network(text, match) and not _section_number(text, match)):
            yield match.span()


def is_ssn(text: str) -> bool:
    """A US Social Security number, or an ITIN: the IRS's taxpayer number for people without one, written the same
    way (area 9xx, groups 50-65, 70-88, 90-92, 94-99)."""
    from stdnum.us import itin, ssn

    return ssn.is_valid(text) or itin.is_valid(text)


@functools.cache
def _iban_registry():
    from stdnum import numdb

    return numdb.get("iban")


def is_iban(text: str) -> bool:
    """Mod-97 check digits right (ISO 7064) and an IBAN country code (stdnum's copy of the SWIFT registry).

    The country's BBAN length and layout are not demanded: the check digits already make a chance match 1 in 97,
    and an account number written with a digit too many or too few still names its holder.
    """
    from stdnum.iso7064 import mod_97_10

    compact = text.replace(" ", "")
    return mod_97_10.is_valid(compact[4:] + compact[:4]) and bool(_iban_registry().info(compact)[0][1])


def iban_spans(text: str) -> Iterator[tuple[int, int]]:
    """Spans of IBANs; a printed IBAN whose regex match ran into the next word is cut back group by group."""
    for match in IBAN.finditer(text):
        groups = match.group(0).split(" ")
        for n in range(len(groups), 0, -1):  # longest valid prefix: "DE89 3704 … 00 AND" -> without " AND"
            candidate = " ".join(groups[:n])
            if is_iban(candidate):
                yield match.start(), match.start() + len(candidate)
                break


def regex_spans(pattern: re.Pattern[str], valid: Callable[[str], bool] | None) -> Callable[[str], Iterator]:
    def spans(text: str) -> Iterator[tuple[int, int]]:
        for match in pattern.finditer(text):
            if valid is None or valid(match.group(0)):
                yield match.span()

    return spans


