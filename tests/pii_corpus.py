"""A PII test corpus that nobody here wrote the formats of: Faker's values in many locales, in sentences.

Every `Sample` is `left + value + right`: `value` is one piece of PII of `kind` (empty for distractor-only
sentences), and `left`/`right` are ordinary words mixed with distractors that must survive scrubbing (dates,
versions, ISBNs, order numbers, timestamps, prices, coordinates, street addresses and postcodes), all from Faker
too. `score` scrubs the samples with any function and returns recall per kind and locale and the kept-word rate.
`generate_phone_contexts` is the issue-25 corpus of phone numbers in the wild: many locales' numbers next to a
phone cue (in several languages), with a label touching them ("-Office"), dotted ("030.1234.5678"), with a "(0)"
trunk prefix after the country code, and from regions outside the scrubber's default list; plus distractors next to
cue words (dotted dates, times, versions, order numbers, prices, ISBNs, emergency numbers).
Used by `tests/tasks/curate/` (small fixed-seed samples) and `bench/pii.py` (large ones).
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "nl_NL", "pl_PL", "ru_RU", "ja_JP",
           "en_IN", "tr_TR", "sv_SE")
KINDS = ("email", "phone", "credit_card", "iban", "ssn", "ipv4", "ipv6")

LEFT = {
    "email": ["Write to {name} at", "Contact:", "Send the form to", "Her address is", "Reply-To:"],
    # half without a word that says "phone": the number alone must be enough
    "phone": ["Call {name} on", "Phone:", "Tel.", "You can reach the office at", "Mobile", "or call",
              "{name}:", "Details:", "— {name},", "Ask {name},", "Back office", "Kontor"],
    "credit_card": ["Card number:", "Charged to card", "Payment with", "The card", "CC"],
    "iban": ["IBAN:", "Transfer the rent to", "Account", "Bank details: {name},"],
    "ssn": ["SSN:", "Social Security number", "The applicant's SSN is"],
    "ipv4": ["Login from", "Client IP:", "Requests came from", "blocked host"],
    "ipv6": ["Login from", "Client IP:", "Requests came from", "blocked host"],
}
RIGHT = ["before {date}.", "on {date}.", "(ref. {distractor}).", "— see {distractor}.", "for {name}, {city}.",
         "today.", ", {address}.", "and {distractor} too."]


@dataclass(frozen=True)
class Sample:
    locale: str
    kind: str  # one of KINDS, or "distractor"
    left: str
    value: str
    right: str
    right_sep: str = " "  # "" when a label touches the value ("555-0143-Fax": right "-Fax")

    @property
    def text(self) -> str:
        return f"{self.left} {self.value}{self.right_sep}{self.right}" if self.value else f"{self.left} {self.right}"


def _card(fake, rng: random.Random) -> str:
    # A card type of the locale's provider: Visa 13/16/19, Mastercard, Amex, Discover, Diners, JCB 15 (1800/2131)
    # and 16, 12-digit Maestro; Mir, UnionPay and national schemes where the locale has them.
    number = fake.credit_card_number()
    style = rng.choice(["bare", "space", "dash"])
    if style == "bare":
        return number
    sep = " " if style == "space" else "-"
    if len(number) == 15 and number[0] == "3":  # Amex prints 4-6-5
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def _iban(fake, rng: random.Random) -> str:
    value = fake.iban()
    # ISO 13616's print format (groups of four) as often as the compact electronic one
    return value if rng.random() < 0.5 else " ".join(value[i : i + 4] for i in range(0, len(value), 4))


_EPOCH_10 = datetime(2001, 9, 9, 2, tzinfo=timezone.utc)  # Unix time has had 10 digits (13 in ms) since then
_END = datetime(2026, 1, 1, tzinfo=timezone.utc)  # Faker's dates end "now" unless told: fixed, the corpus is too


def _ipv4(fake, rng: random.Random) -> str:
    """Half Faker's `ipv4()` (any class, private networks included), half drawn uniformly from all 2**32 addresses.
    7.5 % of uniform draws are not globally routable (240/4 alone is 6.25 %): a public-only rule catches 92.5 % of
    them, close to the 93 % issue 13 measured on a public synthetic PII corpus."""
    return fake.ipv4() if rng.random() < 0.5 else str(ipaddress.IPv4Address(rng.getrandbits(32)))


def _distractor(fake, rng: random.Random) -> tuple[str, str]:
    """(type, text) of something that looks numeric but is no PII."""
    kind = rng.choice(["date", "version", "isbn", "order", "timestamp", "price", "coordinates", "postcode"])
    if kind == "date":
        pattern = rng.choice(["%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%d/%m/%Y", "%d %B %Y"])
        text = fake.date(pattern=pattern, end_datetime=_END)
    elif kind == "version":
        text = rng.choice(["v", "version ", "Python ", "release "]) + fake.numerify(
            rng.choice(["#.##.#", "%.#.##", "##.#.#####.####", "#.#.#-rc#"]))
    elif kind == "isbn":
        text = "ISBN " + rng.choice([fake.isbn13(), fake.isbn10()])
    elif kind == "order":
        prefix = rng.choice(["order #", "Order No. ", "invoice INV-", "tracking number "])
        text = prefix + fake.numerify("#" * rng.randint(6, 12))
    elif kind == "timestamp":
        moment = fake.date_time(end_datetime=_END)
        text = rng.choice([moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M:%S"),
                           moment.strftime("%d/%b/%Y:%H:%M:%S"), f"{moment.isoformat()}Z",
                           f"epoch {int(fake.unix_time(start_datetime=_EPOCH_10, end_datetime=_END))}",
                           f"ts={int(fake.unix_time(start_datetime=_EPOCH_10, end_datetime=_END) * 1000)}"])
    elif kind == "price":
        text = fake.pricetag()
    elif kind == "coordinates":
        text = f"{fake.latitude()}, {fake.longitude()}"
    else:
        text = f"{fake.postcode()} {fake.city()}"
    return kind, text


def _fill(template: str, fake, rng: random.Random) -> str:
    return template.format(name=fake.name(), city=fake.city(), date=_distractor_of(fake, rng, "date"),
                           distractor=_distractor(fake, rng)[1], address=fake.street_address().replace("\n", ", "))


def _distractor_of(fake, rng: random.Random, kind: str) -> str:
    while True:
        found, text = _distractor(fake, rng)
        if found == kind:
            return text


def generate(per_locale: int, seed: int = 0, locales: tuple[str, ...] = LOCALES) -> list[Sample]:
    """`per_locale` samples of each kind (SSNs in en_US only) and as many distractor-only sentences, per locale."""
    from faker import Faker

    samples: list[Sample] = []
    for index, locale in enumerate(locales):
        fake = Faker(locale)
        fake.seed_instance(seed * 1000 + index)
        rng = random.Random(seed * 1000 + index)
        values: dict[str, Callable[[], str]] = {
            "email": lambda: rng.choice([fake.free_email, fake.company_email, fake.email])(),
            "phone": fake.phone_number,
            "credit_card": lambda: _card(fake, rng),
            "iban": lambda: _iban(fake, rng),
            "ssn": fake.ssn,
            "ipv4": lambda: _ipv4(fake, rng),
            "ipv6": fake.ipv6,  # uniform over the whole address space
        }
        for kind in KINDS:
            if kind == "ssn" and locale != "en_US":  # other locales' `ssn` are national ids, not US SSNs
                continue
            for _ in range(per_locale):
                left = _fill(rng.choice(LEFT[kind]), fake, rng)
                samples.append(Sample(locale, kind, left, values[kind](), _fill(rng.choice(RIGHT), fake, rng)))
        for _ in range(per_locale):
            kind, text = _distractor(fake, rng)
            samples.append(Sample(locale, f"distractor:{kind}", f"{fake.sentence(nb_words=4)[:-1]} {text}",
                                  "", _fill(rng.choice(RIGHT), fake, rng)))
    return samples


_RUN = re.compile(r"[^\W_]{2,}")


@dataclass
class Score:
    recall: dict[str, float]  # per kind
    recall_by_locale: dict[str, dict[str, float]]  # locale -> kind -> recall
    kept_words: float  # share of the non-PII words that survive
    kept_by_distractor: dict[str, float]  # distractor type -> share of the distractors left intact
    missed: dict[str, list[str]]  # kind -> values that survived


def caught(sample: Sample, scrubbed: str, replacements: tuple[str, ...]) -> bool:
    """The PII value is gone: none of its letter/digit runs (2+ characters) is left where it stood.

    Replacement strings (placeholders, or datatrove's fake addresses) are removed first, so their own digits
    cannot count as a leak.
    """
    for replacement in replacements:
        scrubbed = scrubbed.replace(replacement, " ")
    rest = Counter(_RUN.findall(scrubbed))
    context = Counter(_RUN.findall(f"{sample.left} {sample.right}"))
    leaked = [run for run in _RUN.findall(sample.value) if rest[run] > context[run]]
    return not leaked


def score(samples: list[Sample], scrub: Callable[[str], str], replacements: tuple[str, ...]) -> Score:
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    missed: dict[str, list[str]] = defaultdict(list)
    kept = total = 0
    intact: dict[str, list[bool]] = defaultdict(list)
    for sample in samples:
        scrubbed = scrub(sample.text)
        words_left = scrubbed
        # a word touching a placeholder, or a value left in place ("<PHONE>-Office", "555-0143-Office"), is kept
        for replacement in (*replacements, *([sample.value] if sample.value else [])):
            words_left = words_left.replace(replacement, " ")
        if sample.value:
            ok = caught(sample, scrubbed, replacements)
            hits[(sample.kind, sample.locale)].append(ok)
            if not ok:
                missed[sample.kind].append(sample.value)
        else:
            intact[sample.kind.split(":", 1)[1]].append(scrubbed.startswith(sample.left))  # left ends in it
        words = Counter(f"{sample.left} {sample.right}".split())
        left_over = Counter(words_left.split())
        kept += sum(min(n, left_over[w]) for w, n in words.items())
        total += sum(words.values())
    by_kind: dict[str, list[bool]] = defaultdict(list)
    by_locale: dict[str, dict[str, float]] = defaultdict(dict)
    for (kind, locale), oks in hits.items():
        by_kind[kind] += oks
        by_locale[locale][kind] = sum(oks) / len(oks)
    return Score(recall={k: sum(v) / len(v) for k, v in by_kind.items()}, recall_by_locale=dict(by_locale),
                 kept_words=kept / max(total, 1), kept_by_distractor={k: sum(v) / len(v) for k, v in intact.items()},
                 missed=dict(missed))


# ---- issue 25: phone numbers in the wild ------------------------------------------------------------------------

# Locales with a Faker phone provider, beyond the 14 above: their regions are mostly outside the scrubber's defaults.
PHONE_LOCALES = LOCALES + (
    "de_AT", "de_CH", "fr_CH", "nl_BE", "da_DK", "no_NO", "fi_FI", "cs_CZ", "sk_SK", "hu_HU", "ro_RO", "bg_BG",
    "hr_HR", "sl_SI", "el_GR", "uk_UA", "lt_LT", "lv_LV", "he_IL", "fa_IR", "th_TH", "vi_VN", "id_ID", "ko_KR",
    "zh_CN", "zh_TW", "en_AU", "en_NZ", "en_CA", "es_MX", "es_AR", "es_CO", "es_CL", "pt_PT", "ka_GE", "az_AZ",
)
PHONE_CONTEXTS = ("cue", "label", "dotted", "trunk", "other region")
CUES = ["Phone:", "Tel.", "Tel:", "call me on", "You can call {name} on", "Mobile:", "Mob.", "Fax:", "Cell",
        "WhatsApp", "{name}, phone", "Reach the office by phone at", "Telefon:", "Téléphone :", "Tél.", "Teléfono:",
        "電話", "Tel./Fax", "phone number", "Contact {name} (mobile):", "Hotline"]
LABELS = ["Office", "Fax", "Home", "Mobile", "Work", "Tel", "Büro", "Cell", "Direct"]
# Cue words next to numbers that are no phone numbers: each must stay
CUE_DISTRACTORS = [
    "Call us before {dotted_date}.", "Phone orders until {date}.", "Tel. hours {time}–{time2}, Mon–Fri.",
    "Our phone support ended on {dotted_date} at {time}.", "Call {name} about order #{order}.",
    "Phone: see invoice INV-{order}.", "New phones from {price}.", "The phone costs {thousands} € now.",
    "Mobile app version {version} is out.", "Fax cover sheet, ISBN {isbn}.", "In an emergency call 112 or 911.",
    "Telefon erreichbar ab {dotted_date}.", "Tél. : voir page 12, édition {year}–{year2}.",
    "Call centre at {postcode}.", "WhatsApp grew by {thousands} users in {year}.", "Phone {lat}, {lon}.",
]


def _national(fake, region: str, rng: random.Random):
    """A Faker number of the locale parsed by libphonenumber (None if it does not parse there)."""
    import phonenumbers

    for _ in range(20):
        try:
            number = phonenumbers.parse(fake.phone_number().split("x")[0], region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return number
    return None


def _phone_in_context(context: str, fake, region: str, rng: random.Random) -> tuple[str, str, str] | None:
    """(left, value, right_sep) of one phone number written the way `context` names, or None if the locale has
    no such form (no "(0)" trunk prefix in the US)."""
    import phonenumbers

    left = _fill(rng.choice(CUES), fake, rng)
    if context == "cue":
        return left, fake.phone_number(), " "
    if context == "label":
        return _fill(rng.choice(["{name}", "Details:", "— {name},", *CUES]), fake, rng), fake.phone_number(), (
            rng.choice(["-", "/", " (", "-"]))
    number = _national(fake, region, rng)
    if number is None:
        return None
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if context == "dotted":
        digits = re.sub(r"\D", "", national)
        if rng.random() < 0.5 and len(digits) % 2 == 0:  # French style: pairs
            return left, ".".join(digits[i : i + 2] for i in range(0, len(digits), 2)), " "
        return left, ".".join(re.findall(r"\d+", national)), " "
    if context == "trunk":
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if meta is None or meta.national_prefix != "0":
            return None
        international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        cc, rest = international.split(" ", 1)
        return left, f"{cc}{rng.choice([' (0)', ' (0) ', '(0)', ' (0)'])}{rest}", " "
    from tasks.core.pii_phone import DEFAULT_REGIONS

    if region in DEFAULT_REGIONS:  # "other region": only the national formats the default regions do not read
        return None
    return left, national, " "


def generate_phone_contexts(per_locale: int, seed: int = 0, locales: tuple[str, ...] = PHONE_LOCALES) -> list[Sample]:
    """Per locale, `per_locale` samples of each of `PHONE_CONTEXTS` (kind `phone: <context>`, where the locale has
    that form) and as many cue-word distractor sentences (kind `distractor:cue`)."""
    from faker import Faker

    samples: list[Sample] = []
    for index, locale in enumerate(locales):
        fake = Faker(locale)
        fake.seed_instance(seed * 1000 + 500 + index)
        rng = random.Random(seed * 1000 + 500 + index)
        region = locale.split("_")[1]
        for context in PHONE_CONTEXTS:
            for _ in range(per_locale):
                made = _phone_in_context(context, fake, region, rng)
                if made is None:
                    break
                left, value, sep = made
                if context == "label":
                    label = rng.choice(LABELS)
                    right = f"{sep}{label}{')' if sep.endswith('(') else ''} {_fill(rng.choice(RIGHT), fake, rng)}"
                    samples.append(Sample(locale, f"phone: {context}", left, value, right, right_sep=""))
                else:
                    right = _fill(rng.choice(RIGHT), fake, rng)
                    samples.append(Sample(locale, f"phone: {context}", left, value, right))
        for _ in range(per_locale):
            samples.append(Sample(locale, "distractor:cue", _cue_distractor(fake, rng), "", ""))
    return samples


def _cue_distractor(fake, rng: random.Random) -> str:
    moment = fake.date_time(end_datetime=_END)
    return rng.choice(CUE_DISTRACTORS).format(
        name=fake.name(), dotted_date=moment.strftime(rng.choice(["%d.%m.%Y", "%d.%m.%y", "%d.%m.%Y %H:%M"])),
        date=_distractor_of(fake, rng, "date"), time=moment.strftime("%H:%M"), time2=f"{rng.randint(13, 23)}:30",
        order=fake.numerify("#" * rng.randint(7, 12)), price=fake.pricetag(), thousands=f"{rng.randint(1, 999)}."
        f"{rng.randint(0, 999):03d}", version=fake.numerify(rng.choice(["#.##.#", "##.#.###", "#.#.##"])),
        isbn=fake.isbn13(), year=rng.randint(1950, 2000), year2=rng.randint(2001, 2025),
        postcode=f"{fake.postcode()} {fake.city()}", lat=fake.latitude(), lon=fake.longitude())
