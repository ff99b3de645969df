"""A PII test corpus that nobody here wrote the formats of: Faker's values in many locales, in sentences.

Every `Sample` is `left + value + right`: `value` is one piece of PII of `kind` (empty for distractor-only
sentences), and `left`/`right` are ordinary words mixed with distractors that must survive scrubbing (dates,
versions, ISBNs, order numbers, timestamps, prices, coordinates, street addresses and postcodes), all from Faker
too. `score` scrubs the samples with any function and returns recall per kind and locale and the kept-word rate.
Used by `tests/tasks/curate/test_pii_recall.py` (a small fixed-seed sample) and `bench/pii.py` (a large one).
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

    @property
    def text(self) -> str:
        return f"{self.left} {self.value} {self.right}" if self.value else f"{self.left} {self.right}"


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
        if sample.value:
            ok = caught(sample, scrubbed, replacements)
            hits[(sample.kind, sample.locale)].append(ok)
            if not ok:
                missed[sample.kind].append(sample.value)
        else:
            intact[sample.kind.split(":", 1)[1]].append(scrubbed.startswith(sample.left))  # left ends in it
        words = Counter(f"{sample.left} {sample.right}".split())
        left_over = Counter(scrubbed.split())
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
