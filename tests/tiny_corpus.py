"""A tiny synthetic English website for tests: pages of plain prose that pass the quality filters, linked together.

Deterministic (seeded) so runs are repeatable; written by the tests themselves, as no corpus can be assumed on a
fresh machine.
"""

from __future__ import annotations

import random
from pathlib import Path

NOUNS = (
    "river garden teacher window village market engine library harbour mountain letter kitchen station forest "
    "painter island bridge student museum farmer doctor castle valley orchard journey lantern meadow sailor "
    "workshop signal theatre wagon compass archive bakery tower canal festival merchant chapel ferry"
).split()
VERBS = (
    "carries builds watches follows repairs describes opens visits paints finds protects measures remembers "
    "collects explains crosses gathers teaches welcomes lights"
).split()
ADJECTIVES = (
    "quiet old bright narrow gentle busy distant golden small careful ancient patient warm steady modern "
    "simple famous hidden early friendly"
).split()
ADVERBS = "slowly often carefully quietly rarely happily early always nearly suddenly".split()
OPENERS = ["In the morning", "Every year", "After the rain", "Long ago", "During the winter", "At the end of the day"]


def sentence(rng: random.Random) -> str:
    a, b = rng.sample(ADJECTIVES, 2)
    n1, n2, n3 = rng.sample(NOUNS, 3)
    verb = rng.choice(VERBS)
    form = rng.randrange(3)
    if form == 0:
        return f"The {a} {n1} {rng.choice(ADVERBS)} {verb} the {b} {n2} near the {n3}."
    if form == 1:
        return f"{rng.choice(OPENERS)}, a {a} {n1} {verb} the {n2} and the {b} {n3} of the town."
    return f"It is said that the {n1} {verb} a {a} {n2}, and that the {n3} is {b} and {rng.choice(ADJECTIVES)}."


def paragraph(rng: random.Random, n_sentences: int = 6) -> str:
    return " ".join(sentence(rng) for _ in range(n_sentences))


def write_site(root: Path, n_pages: int = 30, seed: int = 0, paragraphs: int = 5) -> list[Path]:
    """`root/index.html` linking to `page_XX.html`, each of which links to the next: a crawlable site."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    pages = []
    for i in range(n_pages):
        title = f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
        body = "\n".join(f"<p>{paragraph(rng)}</p>" for _ in range(paragraphs))
        next_link = f'<a href="page_{(i + 1) % n_pages:02d}.html">next</a>'
        path = root / f"page_{i:02d}.html"
        path.write_text(
            f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
            f"<body><nav><a href=\"index.html\">Home</a> {next_link}</nav><main><article><h1>{title}</h1>\n{body}\n"
            f"</article></main><footer>Tiny test site</footer></body></html>"
        )
        pages.append(path)
    links = "".join(f'<li><a href="page_{i:02d}.html">Page {i}</a></li>' for i in range(n_pages))
    (root / "index.html").write_text(
        "<!DOCTYPE html><html lang=\"en\"><head><title>Index</title></head>"
        f"<body><h1>Index</h1><ul>{links}</ul></body></html>"
    )
    return pages
