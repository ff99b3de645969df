"""Phone numbers for the PII scrubber: which digit runs libphonenumber is asked about, in which regions, and the
distractor rules that keep dates, versions, ISBNs, prices, postcodes and coordinates.

`phone_spans(text, regions)` reads national formats in the configured `regions` (numbers written with a country
code are found in any case). A phone cue near a run — "Phone:", "Tel.", "call me on", "Mobile", "Fax", "WhatsApp",
"Telefon", "Tél", "電話" … before it, or a label touching it ("555-0143-Fax") — is the context presidio's phone
recognizer scores with: with one, a run that no configured region reads is read in every region libphonenumber
knows, and dotted forms ("02.123.45.67") and short bare runs count too. `named_otherwise` (an order, ISBN, version
… number) is shared with the card detector.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator

# Regions whose national formats phone numbers are read in (numbers with +country code are found in any case):
# the largest web-text languages' main countries. Curation sets its own list with `CurateConfig.pii_regions`.
DEFAULT_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "PL", "RU", "BR", "IN", "JP", "CN", "AU", "TR", "SE")


def check_regions(regions: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Upper-cased region codes, or a ValueError naming the ones libphonenumber does not know."""
    import phonenumbers

    codes = tuple(r.upper() for r in regions)
    unknown = sorted(set(codes) - phonenumbers.SUPPORTED_REGIONS)
    if unknown or not codes:
        raise ValueError(f"unknown phone regions {unknown or '(none given)'}: use ISO 3166-1 alpha-2 codes that "
                         "libphonenumber supports (phonenumbers.SUPPORTED_REGIONS), e.g. ['US', 'DE']")
    return codes


# Words that say "phone number" before one, in the largest web languages (presidio's context words, and theirs in
# other languages). Latin and Cyrillic ones are whole words; CJK ones are not (no spaces around them: "お電話").
_CUE_WORDS = (
    r"(?:tele)?phone[sd]?|tel|ph|call(?:s|ed|ing)?|mobile?|mob|cell(?:phone)?|fax|dial|ring|sms|whatsapp|viber|"
    r"contact|reach|hotline|landline|gsm|téléphone|tél|portable|teléfono|telefono|tfno|telf|móvil|cellulare|"
    r"telefone|celular|contato|telefon(?:nummer)?|rufnummer|handy|mobil(?:telefon)?|natel|telefoon|mobiel|tlf|tfn|"
    r"puhelin|τηλ|τηλέφωνο|тел|телефон|моб|טלפון|هاتف|جوال"
)
_CUE_CJK = r"電話|电话|手机|携帯|전화|휴대폰"
# Labels written after a number and touching it ("555-0143-Fax", "0301234567/Büro", "030 1234567 (Fax)").
_LABELS = rf"{_CUE_WORDS}|office|home|work|direct|main|private|privat|büro|bureau|ufficio|oficina|casa|voice"
_CUE = rf"(?:\b(?:{_CUE_WORDS})\b|{_CUE_CJK}|(?-i:\b[TMF]):)\.?:?[^\w\n]{{0,3}}"
_PHONE_WORD = re.compile(rf"{_CUE}(?:\w+[^\w\n]{{1,3}}){{0,4}}$", re.IGNORECASE)
_PHONE_WORD_RIGHT_BEFORE = re.compile(rf"{_CUE}$", re.IGNORECASE)  # "Mob. 29.774.049", not "grew by 29.774.049"
_LABEL_AFTER = re.compile(rf"(?:-|/| ?[(\[])(?:{_LABELS})\b", re.IGNORECASE)
_CUE_TOUCHING = re.compile(rf"(?:\b(?:{_CUE_WORDS})|{_CUE_CJK})[.:/-]$", re.IGNORECASE)  # "Tel.030…", "Fax-…"

# A run of digit groups that could hold a phone number: optional + or (+cc), groups joined by at most two of
# space/dot/dash/slash (with parentheses around area codes), an optional extension. Possessive quantifiers: a run
# that ends in a time ("14:22"), a decimal or a word is rejected whole rather than shortened until something fits;
# a label word may touch it ("-Office"). After a letter, ".", "-" or "/" may touch it: a phone word must end there.
# CJK text puts no space between words and numbers ("電話03-1234-5678まで").
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"  # kana, CJK ideographs, Hangul: no spaces between words and numbers
PHONE_CANDIDATE = re.compile(
    rf"(?:(?<![\w+#$€£¥₹.,/()-])|(?<=[^\W\d_][./-])|(?<=[{_CJK}]))(?:\(?\+\d{1,3}\)[ ]?|\(?\+)?\(?\d++\)?"
    r"(?:[ \u00a0./–-]{0,2}\(?\d++\)?)*+"
    rf"(?:[ ]?(?:x|ext\.?|extension|#)[ ]?\d{{1,6}})?+(?![^\W{_CJK}]|[:%°]|[.,]\d|[-/](?!(?:{_LABELS})\b)[\w/])",
    re.IGNORECASE,
)
_EXTENSION = re.compile(r"(?:x|ext\.?|extension|#)[ ]?\d{1,6}$")
_DATE = re.compile(
    r"(?:(?:19|20)\d\d([-./])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])"  # 2024-03-15
    r"|(?:0?[1-9]|[12]\d|3[01])([-./])(?:0?[1-9]|1[0-2])\2(?:19|20)?\d\d"  # 15.03.2024, 15/03/24
    r"|(?:0?[1-9]|1[0-2])([-./])(?:0?[1-9]|[12]\d|3[01])\3(?:19|20)\d\d)(?!\d|[-./]\d)"  # 03/15/2024
)
_YEAR_RANGE = re.compile(r"(?:1[5-9]|20)\d\d ?[-–/] ?(?:1[5-9]|20)\d\d$")  # 1877-1953, season 2019/2020
_POSTCODE = re.compile(r"\d{5}-\d{3}$")  # Brazil's CEP; no numbering plan groups a phone number 5-3
# Thousands separators: 6 500 000, 2.462.000 (phones are grouped 3-3-3 with spaces, not 1-3-3 or with dots; and an
# amount does not start with 0, a trunk prefix does: 0475.123.456)
_THOUSANDS = re.compile(r"[1-9]\d?(?:[ \u00a0\u202f]\d{3})+$|[1-9]\d{0,2}(?:\.\d{3})+$")
# Numbers in the shape of an amount that a phone cue says are phone numbers: near one, national lengths in shapes
# few amounts take ("call me on 612.345.678", "on 2330.028574"; a coordinate has at most 3 digits before the dot);
# right after one, any ("Mob. 29.774.049", "WhatsApp 64 290 979", but "WhatsApp grew by 64 290 979" is a count).
_PHONE_LIKE_AMOUNT = re.compile(r"\d{3}(?:\.\d{3}){2}$|\d{4,}\.\d{4,}$")
_PHONE_LIKE_AMOUNT_RIGHT_AFTER_CUE = re.compile(r"\d{1,3}(?:[ .]\d{3}){2,}$")
_DECIMAL = re.compile(r"-?(?:0|[1-9]\d*)[.,]\d+$")  # "0209.155160": no number has a leading 0 but 0.5
# 1.2.3.4, 10.0.0.0/8, 4.8.3.1: versions and sections. Dotted phone numbers group 2-4 digits, 9 or more of them
# ("06.12.34.56.78", "0475.12.34.56"); with a phone cue any dotted run but an IPv4 address may be one.
_DOTTED_QUAD_OR_VERSION = re.compile(r"\d+(?:\.\d+){3,}(?:/\d{1,3})?$")
_DOTTED_PHONE = re.compile(r"(?=(?:\D*\d){9})\d{2,4}(?:\.\d{2,4}){3,}$")
# Without a phone word before them, bare runs are no phone numbers when they are 7-9 digits (no separator, trunk 0
# or +: an id, a count, a table cell) or look like Unix time (10 or 13 digits from 1: seconds or ms, 2001-2286);
# other bare runs of 10+ digits ("9498777106") are phone-shaped on their own.
_EPOCH = re.compile(r"1\d{9}(?:\d{3})?$")
_SHORT_BARE = re.compile(r"[1-9]\d{6,8}$")
_MAX_DIGITS = 17  # E.164 allows 15; a longer run is a table row, a code or several numbers in a row
# Words right before a number that name it as something else than a phone or card number ("order no.", "ISBN",
# "v"); "phone no." must still count, so a bare "no."/"nr." is not such a word. A time or ratio ("12:30") ends in ":".
_NAMED_OTHERWISE = re.compile(
    r"(?:\b(?:isbn(?:-1[03])?|issn|doi|pmid|pmcid|arxiv|version|v|build|release|ref|patent|sku|pages?|pp|p|〒|#"
    r"|(?-i:ISO|IEC|EN|DIN|ANSI|RFC))"  # standards bodies in capitals: French "en" is no standard
    r"|\b(?:order|invoice|tracking|serial|parcel|shipment)(?:\s*(?:number|no|nr|id))?"
    r"|\b(?:item|part|article|customer|case|ticket|account)\s*(?:number|no|nr|id)"
    r"|\b(?:ts|timestamp|epoch|unix time|id|uid|pid|size|count|seq)\s*=?)\.?:?\s*$|\d:\s*$",
    re.IGNORECASE,
)
_MONEY_THOUSANDS = re.compile(r"\d{1,3}(?:[ .\u00a0\u202f]\d{3})+")
_MONEY_AFTER = re.compile(r"\s?(?:[,.]\d{1,2}\b|[$€£¥₹%‰]|(?:EUR|USD|GBP|zł|руб|₽|kg|km|m²)\b)")
_MONEY_BEFORE = re.compile(r"[$€£¥₹]\s?$")


def named_otherwise(text: str, start: int) -> bool:
    """The words just before `start` say the number there is an order, tracking, ISBN, version … number."""
    return bool(_NAMED_OTHERWISE.search(text, max(0, start - 20), start))


def phone_cue(text: str, start: int, end: int) -> int:
    """2: a phone word right before `text[start:end]` or a label touching its end ("-Fax"); 1: a phone word a few
    words before it; 0: none."""
    if _PHONE_WORD_RIGHT_BEFORE.search(text, max(0, start - 20), start) or _LABEL_AFTER.match(text, end):
        return 2
    return 1 if _PHONE_WORD.search(text, max(0, start - 50), start) else 0


def _is_ipv4(candidate: str) -> bool:
    try:
        ipaddress.IPv4Address(candidate.split("/", 1)[0])  # leading zeros ("02.123.45.67") are no address
    except ValueError:
        return False
    return True


def _not_a_phone(text: str, start: int, end: int, cue: int, part: bool = False) -> bool:
    """Distractor rules: short bare numbers and Unix times without a phone cue, dates, year ranges, versions and
    dotted quads (unless dotted like a phone number, or cued), decimals, postcodes, thousands (unless a cue stands
    right before them), money, ISBNs, and numbers that a word before them names as something else (order no., ISBN,
    PMID, v). A `part` of a run that passed as a whole ("05225/8738444") is not bare. `cue` is `phone_cue`'s.
    """
    candidate = text[start:end].lstrip("(").rstrip(")")
    if not part and not cue and (_SHORT_BARE.match(candidate) or _EPOCH.match(candidate)):
        return True
    if _DATE.match(candidate):  # also a date followed by more numbers: "10.10.2006  4512 kcal"
        return True
    if _DOTTED_QUAD_OR_VERSION.match(candidate) and (
            _is_ipv4(candidate) or not (cue or _DOTTED_PHONE.match(candidate))):
        return True
    if any(p.match(candidate) for p in (_YEAR_RANGE, _DECIMAL, _POSTCODE, _THOUSANDS)) and not (
            cue and _PHONE_LIKE_AMOUNT.match(candidate) or cue == 2 and _PHONE_LIKE_AMOUNT_RIGHT_AFTER_CUE.match(
            candidate)):
        return True
    before, after = text[max(0, start - 20) : start], text[end : end + 6]
    if named_otherwise(text, start) or _MONEY_BEFORE.search(before):
        return True
    if _MONEY_THOUSANDS.fullmatch(candidate) and _MONEY_AFTER.match(after):
        return True  # "1 234 567,89 €", "512 345 678 EUR"
    digits = "".join(c for c in candidate if c.isdigit())
    return len(digits) == 13 and digits[:3] in ("978", "979") and _is_isbn(digits)


def _is_isbn(digits: str) -> bool:
    from stdnum import isbn

    return isbn.is_valid(digits)


@functools.cache
def _leniency():
    import phonenumbers

    # POSSIBLE: the number's length fits the region's numbering plan. VALID would also demand an allocated range,
    # which misses numbers written on pages about regions whose plans changed, numbers in new ranges, and every
    # made-up-but-realistic number (Faker's, the test corpora's); a number written like a phone is personal data
    # whether or not the operator has assigned it yet. Precision comes from the candidate pattern and the
    # distractor rules instead.
    return phonenumbers.Leniency.POSSIBLE


@functools.cache
def _all_regions() -> tuple[str, ...]:
    import phonenumbers

    return tuple(sorted(phonenumbers.SUPPORTED_REGIONS))


@functools.lru_cache(maxsize=65536)  # a page repeats its numbers (header, footer, contact box)
def _matches(candidate: str, region: str) -> tuple[tuple[int, int], ...]:
    import phonenumbers

    return tuple((m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(candidate, region, leniency=_leniency()))


def _best_reading(raw: str, regions: tuple[str, ...]) -> tuple[tuple[tuple[int, int], ...], int]:
    """The spans of the region whose reading of `raw` covers the most digits in the fewest numbers (one reading
    may split "(04723) 18850 241" in three, another read it whole), and how many digits they cover."""
    total = sum(c.isdigit() for c in raw)
    best: tuple[tuple[int, int], ...] = ()
    best_key = (0, 0)
    for region in regions:
        found = _matches(raw, region)
        key = (sum(c.isdigit() for s, e in found for c in raw[s:e]), -len(found))
        if key > best_key:
            best, best_key = found, key
            if key == (total, -1):
                break
    return best, best_key[0]


def phone_spans(text: str, regions: tuple[str, ...]) -> Iterator[tuple[int, int]]:
    """Spans of phone numbers in `text`, national formats read in each of `regions` in turn.

    Only runs of 7 to 17 digits that pass the distractor rules reach libphonenumber; the region whose reading
    covers the most digits of a run wins, and a run starting with + is read once (its country code says the
    region). A cued run (`phone_cue`) that no region in `regions` reads whole is read in every region.
    """
    for cand in PHONE_CANDIDATE.finditer(text):
        start, end = cand.span()
        raw = cand.group(0)
        if start and text[start - 1] in "./-" and not _CUE_TOUCHING.search(text, max(0, start - 16), start):
            continue  # "file.0301234567", "x-5551234": only a phone word may touch the number
        if raw.endswith(")") and raw.count(")") > raw.count("("):  # "(ref. 48.85661)": the ")" closes the prose
            raw, end = raw[:-1], end - 1
        main = _EXTENSION.sub("", raw)
        n_digits = sum(c.isdigit() for c in main)
        if not 7 <= n_digits <= _MAX_DIGITS:
            continue
        cue = phone_cue(text, start, end)
        if _not_a_phone(text, start, start + len(main.rstrip()), cue):
            continue
        international = raw.lstrip("(").startswith("+")
        best, covered = _best_reading(raw, regions[:1] if international else regions)
        whole = covered == sum(c.isdigit() for c in raw) and len(best) == 1
        if cue and not whole and not international:
            anywhere, covered_anywhere = _best_reading(raw, _all_regions())
            if (covered_anywhere, -len(anywhere)) > (covered, -len(best)):
                best = anywhere
        elif cue and not whole and _known_country_code(main):
            best = ((0, len(raw)),)  # "Phone: +54 9 3889 9815": a length the plan does not know, still a number
        for s, e in best:  # a reading may split the run: each part must pass as a phone number on its own
            part = (s, e) != (0, len(raw))
            if sum(c.isdigit() for c in raw[s:e]) >= 7 and not _not_a_phone(text, start + s, start + e, cue, part):
                yield start + s, start + e


def _known_country_code(raw: str) -> bool:
    """`raw` opens with + and a country calling code libphonenumber knows, followed by at least 6 more digits."""
    import phonenumbers

    digits = "".join(c for c in raw if c.isdigit())
    return any(int(digits[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE and len(digits) - n >= 6
               for n in (1, 2, 3))
