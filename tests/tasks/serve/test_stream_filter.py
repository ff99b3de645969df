"""The streaming output filter: for any split of an answer into deltas, the stream sends exactly what filtering the
whole answer gives, so it never sends the start of something it later redacts and never drops text after one.
Answers mix Faker's e-mails, phone numbers (several locales), public IPs and card numbers of every issuer length."""

from __future__ import annotations

import random

from faker import Faker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core.pii import scrub_pii
from tasks.serve.stream_filter import HOLD_CHARS, StreamFilter, filtered_stream

FAKERS = {locale: Faker(locale) for locale in ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT")}
CARD_TYPES = ["visa13", "visa16", "visa19", "amex", "mastercard", "discover", "jcb15", "jcb16", "diners", "maestro"]


def scrub(text: str) -> str:
    return scrub_pii(text)[0]


def pii_value(rng: random.Random, fake: Faker) -> str:
    kind = rng.choice(["email", "long_email", "phone", "ip", "card", "grouped_card"])
    if kind == "email":
        return fake.email()
    if kind == "long_email":  # local parts up to the RFC's 64 characters: longer than any hold-back window
        local = ".".join(fake.user_name() for _ in range(rng.randint(3, 6)))[:64].strip(".")
        return f"{local}@{fake.domain_name()}"
    if kind == "phone":
        return fake.phone_number()
    if kind == "ip":
        return fake.ipv4_public()
    number = fake.credit_card_number(card_type=rng.choice(CARD_TYPES))
    if kind == "grouped_card":
        sep = rng.choice([" ", "-"])
        return sep.join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def answer(seed: int) -> str:
    rng = random.Random(seed)
    fake = FAKERS[rng.choice(sorted(FAKERS))]
    fake.seed_instance(seed)
    parts = []
    for _ in range(rng.randint(1, 6)):
        parts.append(fake.sentence(nb_words=rng.randint(0, 12)) if rng.random() < 0.7 else "")
        parts.append(pii_value(rng, fake))
    parts.append(fake.sentence())
    return rng.choice([" ", "\n", ", ", ": "]).join(parts)


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(0, 10_000), max_size=60))
def test_stream_equals_filtering_the_whole_answer(seed, cuts):
    text = answer(seed)
    expected = scrub(text)
    sent = ""
    for out in filtered_stream(split(text, cuts), scrub):
        sent += out
        assert expected.startswith(sent)  # nothing sent is ever taken back
    assert sent == expected


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_token_sized_deltas_send_settled_text_early(seed):
    text = answer(seed) + " " + "plain words follow here " * 8  # well past the hold-back window
    stream, sent = StreamFilter(scrub), ""
    for i in range(0, len(text), 3):
        sent += stream.push(text[i : i + 3])
    assert len(sent) > 0 and len(scrub(text)) - len(sent) <= 2 * HOLD_CHARS + 64  # a bounded tail waits
    assert sent + stream.flush() == scrub(text)


def test_a_long_email_split_by_tokens_is_never_partly_sent():
    text = "Write to " + "firstname.middlename.lastname.department" + "@mail.example.com now, thanks."
    deltas = [text[i : i + 2] for i in range(0, len(text), 2)]
    outs = list(filtered_stream(deltas, scrub))
    assert "".join(outs) == "Write to <EMAIL> now, thanks."
    assert not any("firstname" in out for out in outs)


def test_text_after_a_redaction_is_kept():
    upper = lambda text: text.replace("secret", "******")
    deltas = ["a" * 60, "sec", "ret", " end", " and more" * 20]
    assert "".join(filtered_stream(iter(deltas), upper)) == "a" * 60 + "****** end" + " and more" * 20
