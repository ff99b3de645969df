"""PII scrubbing against formats nobody here wrote: a fixed-seed Faker corpus in 14 locales (tests/pii_corpus.py),
the formats issue 13 found missed, and the validators' edges (Luhn, IIN, mod-97, SSN areas, which IP addresses
name a host)."""

from __future__ import annotations

import ipaddress
import random
import typing

import pytest
from faker import Faker
from pii_corpus import KINDS, LOCALES, PHONE_CONTEXTS, generate, generate_phone_contexts, score

from tasks.core.pii import DEFAULT_REGIONS, IP_SCOPES, PLACEHOLDERS, PIIScrubber, scrub_pii
from tasks.core.pii import KINDS as PII_KINDS
from tasks.curate.config import CurateConfig, IPScope, PIIKind

# The distractors issue 13 names; postcodes are also in the corpus but are reported, not asserted (a Japanese
# postcode "137-2284" is written exactly like a local phone number).
NAMED_DISTRACTORS = ("date", "version", "isbn", "order", "timestamp", "price", "coordinates")


@pytest.fixture(scope="module")
def faker_score():
    samples = generate(per_locale=12, seed=13)
    return score(samples, lambda text: scrub_pii(text)[0], tuple(PLACEHOLDERS.values()))


def test_recall_per_kind_on_faker_corpus(faker_score):
    assert set(faker_score.recall) == set(KINDS)
    low = {kind: r for kind, r in faker_score.recall.items() if r < 0.95}
    assert not low, (low, {kind: faker_score.missed.get(kind, [])[:10] for kind in low})


def test_recall_in_every_locale(faker_score):
    assert set(faker_score.recall_by_locale) == set(LOCALES)
    for locale, by_kind in faker_score.recall_by_locale.items():
        assert min(by_kind.values()) >= 0.9, (locale, by_kind)


def test_non_pii_words_and_distractors_are_kept(faker_score):
    assert faker_score.kept_words >= 0.99
    for kind in NAMED_DISTRACTORS:
        assert faker_score.kept_by_distractor[kind] >= 0.95, (kind, faker_score.kept_by_distractor)


@pytest.mark.parametrize(
    "number",
    ["(37) 788-063", "467 3395", "+447700 208 815", "345-899-3560x4587", "9498777106", "21 253 109 8211",
     # written forms of other countries: country code in parentheses, trunk prefix in parentheses, 5-4 mobiles
     "(+44) 20 7946 0958", "+49 (0) 30 1234567", "+7 (495) 123-45-67", "070-1234-5678", "+55 11 91234-5678"],
)
def test_phone_formats_missed_before(number):
    scrubbed, counts = scrub_pii(f"Ruf an: {number}, danke.")
    assert scrubbed == "Ruf an: <PHONE>, danke." and counts["phone"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "Built in 1957–1959 and sold 2004/2005 (1877-1953).",  # year ranges
        "Lancet. 2005;366:1165-74. [PMID: 16198765] and arXiv 2101.0123456",
        "Unemployment rose by 133.000 to 2.462.000; 6 500 000 people took part.",  # thousands separators
        "Class 1 (IEC/EN 62053-21), ISO 8601, RFC 9309.",
        "logged at 1710512525 (ms 1710512525123) on 10.10.2006  4512 kcal",
        "population 8336817, area 783562 km2, row 123456789 987654321 0.123456",  # bare numbers, a table row
        "the hotel 1234567 rooms",  # "tel" inside a word is no phone word
    ],
)
def test_numbers_that_are_not_phones_stay(text):
    assert scrub_pii(text) == (text, dict.fromkeys(PLACEHOLDERS, 0))


@pytest.mark.parametrize("text", ["Call the office at 5551234.", "Tel. 376085878", "Handy: 15662000"])
def test_short_bare_numbers_need_a_phone_word(text):
    assert scrub_pii(text)[1]["phone"] == 1


def test_standards_bodies_name_numbers_only_in_capitals():
    assert scrub_pii("Klasse 1 (IEC/EN 62053-21)")[1]["phone"] == 0
    assert scrub_pii("joignable en 06 12 34 56 78 demain")[0] == "joignable en <PHONE> demain"  # French "en"


def test_subscriber_number_after_an_area_code_is_not_bare():
    # libphonenumber may read "area code/subscriber" as two numbers; the subscriber part still goes
    assert "8738444" not in scrub_pii("Kanzlei Niemeyer\n05225/8738444\nHof 9")[0]


def faker_cards(card_type: str, n: int, prefix: str = "") -> list[str]:
    fake = Faker("en_US")
    fake.seed_instance(7)
    cards = (fake.credit_card_number(card_type) for _ in range(50 * n))
    return [c for c in cards if c.startswith(prefix)][:n]


@pytest.mark.parametrize(
    "number",
    [*faker_cards("maestro", 3), *faker_cards("jcb15", 3, prefix="1800"), *faker_cards("diners", 2),
     *faker_cards("visa19", 2)],
)
def test_card_lengths_and_schemes_missed_before(number):
    assert len(number) in (12, 14, 15, 19)
    for written in (number, " ".join(number[i : i + 4] for i in range(0, len(number), 4))):
        scrubbed, counts = scrub_pii(f"paid with {written} yesterday")
        assert scrubbed == "paid with <CREDIT_CARD> yesterday" and counts["credit_card"] == 1


def test_cards_need_luhn_and_an_issuer_range():
    visa = faker_cards("visa16", 1)[0]
    wrong_check = visa[:-1] + str((int(visa[-1]) + 1) % 10)
    no_scheme = "7" + visa[1:]  # 7 is no payment scheme's first digit
    for text in (f"ref {wrong_check} ok", f"ref {no_scheme} ok"):
        assert scrub_pii(text, kinds=("credit_card",))[1]["credit_card"] == 0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("from 2a00:1450:4001:82b::200e today", "from <IP_ADDRESS> today"),
        ("host [2606:4700:4700::1111]:443 up", "host [<IP_ADDRESS>]:443 up"),
        ("mapped ::ffff:8.8.8.8 seen", "mapped <IP_ADDRESS> seen"),
        ("full 2001:4860:4860:0:0:0:0:8888.", "full <IP_ADDRESS>."),
        ("NAT64 64:ff9b::808:808 but 64:ff9b::7f00:1", "NAT64 <IP_ADDRESS> but 64:ff9b::7f00:1"),  # 8.8.8.8, 127.0.0.1
        # name somebody's machine although not routable: link-local (often the MAC inside), unique-local
        ("via fe80::21a:2bff:fe3c:4d5e%eth0 and fd12:3456::1", "via <IP_ADDRESS> and <IP_ADDRESS>"),
        # name no one: documentation, loopback, unspecified; and things with colons that are no address
        ("doc 2001:db8::1 3fff::7 ::1 :: ok", "doc 2001:db8::1 3fff::7 ::1 :: ok"),
        ("at 14:22:05, MAC 00:1a:2b:3c:4d:5e, std::vector", "at 14:22:05, MAC 00:1a:2b:3c:4d:5e, std::vector"),
        ("s[::2], s[1::2], s[10::-1], rows[256::4], f(x)[300::1]",  # Python slices parse as IPv6
         "s[::2], s[1::2], s[10::-1], rows[256::4], f(x)[300::1]"),
    ],
)
def test_ipv6(text, expected):
    assert scrub_pii(text)[0] == expected


@pytest.mark.parametrize(
    "address, host_scope, global_scope",
    [
        ("8.8.4.4", True, True),
        ("10.0.4.17", True, False),  # private networks: a machine on somebody's network
        ("192.168.178.21", True, False),
        ("172.20.0.3", True, False),
        ("100.72.1.9", True, False),  # carrier-grade NAT: a subscriber
        ("169.254.10.20", True, False),
        ("247.18.3.90", True, False),  # 240/4: never assigned, but 1 in 16 uniformly drawn addresses
        ("127.0.0.1", False, False),
        ("0.0.0.0", False, False),
        ("255.255.255.255", False, False),
        ("198.51.100.23", False, False),  # documentation (RFC 5737)
    ],
)
def test_ipv4_scopes(address, host_scope, global_scope):
    text = f"Login from {address} failed"
    for scope, scrubbed in (("host", host_scope), ("global", global_scope)):
        assert (scrub_pii(text, ip_scope=scope)[0] == "Login from <IP_ADDRESS> failed") is scrubbed, scope


def test_uniformly_drawn_ipv4_addresses_are_caught():
    rng = random.Random(13)
    addresses = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(4000)]
    missed = [a for a in addresses if scrub_pii(f"Client IP: {a} today")[1]["ip"] != 1]
    # only "this network", loopback, the broadcast and the documentation blocks stay: 2/256 of the space
    assert all(a.startswith(("0.", "127.")) for a in missed), missed
    assert len(missed) / len(addresses) < 0.015


@pytest.mark.parametrize(
    "text",
    [
        "version 10.0.0.1", "v1.2.3.4", "firmware 4.4.2.1", "Build: 6.1.7601.24",
        "see Section 4.8.3.1 and § 3.3.2.1",
        "Contents\n4.8.3.1. Parameters\n  4.8.3.2. Arguments",  # section numbers opening a line
        "route 10.0.0.0/8, 192.168.1.0/24, 100.64.0.0/10 and 2002::/16",  # CIDR blocks
        "netmask 255.255.255.0, 255.255.240.0 or ffff:ffff:ffff:ffff::",
    ],
)
def test_dotted_quads_that_number_something_else_stay(text):
    assert scrub_pii(text)[0] == text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Address=192.168.0.15/24", "Address=<IP_ADDRESS>/24"),  # a host in its network: host bits set
        ("allow 203.0.114.9/32 and 2a00:1450::200e/128", "allow <IP_ADDRESS>/32 and <IP_ADDRESS>/128"),  # one host
        ("Login from 10.0.0.1. Then it failed", "Login from <IP_ADDRESS>. Then it failed"),
        ("10.0.0.5 myhost\n8.8.8.8 dns", "<IP_ADDRESS> myhost\n<IP_ADDRESS> dns"),  # a hosts file
    ],
)
def test_addresses_next_to_those_forms_are_caught(text, expected):
    assert scrub_pii(text)[0] == expected


def test_iban_compact_and_printed_with_mod97():
    fake = Faker("de_DE")
    fake.seed_instance(3)
    iban = fake.iban()
    printed = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    for written in (iban, printed):
        assert scrub_pii(f"IBAN {written} AND MORE")[0] == "IBAN <IBAN> AND MORE"
    broken = iban[:2] + f"{(int(iban[2:4]) + 1) % 100:02d}" + iban[4:]  # wrong check digits
    assert scrub_pii(f"IBAN {broken}", kinds=("iban",))[1]["iban"] == 0


def test_us_ssn_only_where_issued():
    fake = Faker("en_US")
    fake.seed_instance(5)
    ssn = fake.ssn()
    assert scrub_pii(f"SSN {ssn}.") == ("SSN <SSN>.", {**dict.fromkeys(PLACEHOLDERS, 0), "ssn": 1})
    for never_issued in ("000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"):
        assert scrub_pii(f"SSN {never_issued}.", kinds=("ssn",))[1]["ssn"] == 0
    for itin in ("912-70-1234", "987-94-0001"):  # 9xx areas with ITIN groups: the IRS issues these
        assert scrub_pii(f"ITIN {itin}.")[0] == "ITIN <SSN>."


def test_regions_decide_national_formats():
    text = "Kontor 2345 6789 i dag"  # an 8-digit Norwegian number: no length the US plan allows
    assert scrub_pii(text, regions=("US",))[0] == text
    assert scrub_pii(text, regions=("US", "NO"))[0] == "Kontor <PHONE> i dag"
    assert scrub_pii("call +47 2345 6789", regions=("US",))[0] == "call <PHONE>"  # +country code: any region
    # a phone word before it: read in every region libphonenumber knows
    assert scrub_pii("ring 2345 6789 i dag", regions=("US",))[0] == "ring <PHONE> i dag"


def test_scrubber_step_takes_curate_config():
    cfg = CurateConfig(pii_kinds=["email", "ip"], pii_regions=["no", "se"], pii_ip_scope="global")
    assert cfg.pii_regions == ["NO", "SE"]
    step = PIIScrubber(tuple(cfg.pii_kinds), tuple(cfg.pii_regions), cfg.pii_ip_scope)
    text = "mail a@b.org or ring 2345 6789 from 10.1.2.3 or 8.8.8.8"
    assert step.format(text) == "mail <EMAIL> or ring 2345 6789 from 10.1.2.3 or <IP_ADDRESS>"
    assert CurateConfig().pii_regions == list(DEFAULT_REGIONS)
    assert CurateConfig().pii_ip_scope == "host"
    assert typing.get_args(PIIKind) == PII_KINDS
    assert typing.get_args(IPScope) == IP_SCOPES


@pytest.mark.parametrize(
    "field, value",
    [("pii_regions", ["XX"]), ("pii_regions", []), ("pii_regions", ["US", False]), ("pii_kinds", ["name"]),
     ("pii_ip_scope", "public")],
)
def test_bad_pii_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        CurateConfig(**{field: value})


# ---- issue 25: phone numbers in the wild ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def phone_context_score():
    samples = generate_phone_contexts(per_locale=3, seed=25)
    return score(samples, lambda text: scrub_pii(text)[0], tuple(PLACEHOLDERS.values()))


def test_phone_forms_in_the_wild_on_faker_corpus(phone_context_score):
    forms = {f"phone: {context}" for context in PHONE_CONTEXTS}
    assert forms <= set(phone_context_score.recall)
    low = {kind: r for kind, r in phone_context_score.recall.items() if kind in forms and r < 0.95}
    assert not low, (low, {kind: phone_context_score.missed.get(kind, [])[:10] for kind in low})
    assert phone_context_score.kept_words >= 0.99
    assert phone_context_score.kept_by_distractor["cue"] >= 0.95


@pytest.mark.parametrize(
    "text, number",
    [
        ("Phone: +1-202-555-0143-Office today", "+1-202-555-0143"),  # a label touching the number
        ("or 555-0143-Fax, thanks", "555-0143"),
        ("Zentrale 0301234567/Büro", "0301234567"),
        ("Tel. 030.1234.5678 bis 18 Uhr", "030.1234.5678"),  # dotted national formats
        ("Tél. 06.12.34.56.78 le soir", "06.12.34.56.78"),
        ("Tel.0475.12.34.56", "0475.12.34.56"),  # a phone word touching it
        ("Mob. 612.345.678 (Madrid)", "612.345.678"),
        ("Tel +44 (0)20 7946 0958 or", "+44 (0)20 7946 0958"),  # "(0)" trunk prefix
        ("Fax: +49(0)30 1234567.", "+49(0)30 1234567"),
        ("Telefon: 0316 123456", "0316 123456"),  # Austria, not in the default regions
        ("WhatsApp 64 290 979", "64 290 979"),  # Latvia, grouped like an amount
        ("電話03-1234-5678まで", "03-1234-5678"),
        ("Teléfono: +54 9 3889 9815", "+54 9 3889 9815"),  # +country code, a length the plan does not know
    ],
)
def test_phone_numbers_in_the_wild(text, number):
    scrubbed, counts = scrub_pii(text)
    assert scrubbed == text.replace(number, "<PHONE>") and counts["phone"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "Call us before 12.03.2024 or on 01.04.24 12:30.",  # dotted dates next to a cue
        "Tel. hours 9:00–17:30, Mon–Fri.",
        "Phone orders: order #12345678, invoice INV-20240312.",
        "New phones from $1,299.00 or 1.299.000 ₫; WhatsApp grew by 64 290 979 users.",  # no cue right before
        "Mobile app version 2.24.1 is out; Phone firmware v10.3.1.2345.",
        "Fax cover sheet, ISBN 978-3-16-148410-0.",
        "In an emergency call 112 or 911.",
        "Phone 48.856613, 2.352222 (the shop).",  # coordinates
        "Tél. : voir page 12, édition 1998–2004.",
        "Call the server at 192.0.2.15.",  # a documentation address: neither an IP to scrub nor a phone
    ],
)
def test_cue_words_next_to_numbers_that_are_not_phones(text):
    assert scrub_pii(text) == (text, dict.fromkeys(PLACEHOLDERS, 0))


def test_cued_ip_address_is_an_ip_not_a_phone():
    assert scrub_pii("Phone server 10.20.30.40 is down") == (
        "Phone server <IP_ADDRESS> is down", {**dict.fromkeys(PLACEHOLDERS, 0), "ip": 1})


def test_dotted_number_without_a_cue_needs_a_phone_shape():
    assert scrub_pii("Jean 06.12.34.56.78")[0] == "Jean <PHONE>"  # 2-4 digit groups, 9+ digits
    assert scrub_pii("see 4.8.3.1234567")[0] == "see 4.8.3.1234567"  # a version
