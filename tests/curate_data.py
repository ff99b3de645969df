"""Tiny documents for the curate/shard tests: seeded English prose that passes FineWeb's filters, plus makers of
near-duplicates, foreign-language pages and a DocSet writer (DOC_SCHEMA Parquet + manifest)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.artifacts import DocSet, finish_stage
from tasks.core.schema import DOC_SCHEMA

_ADJ = "quiet bright early careful simple patient modern gentle honest steady curious open warm clever busy".split()
_NOUN = ("garden river teacher village market library window station kitchen letter bridge harvest painter "
         "engine journey morning student doctor museum forest").split()
_VERB = "visits repairs describes follows builds watches carries finds opens paints studies remembers".split()
_TAIL = ["with great care", "before the rain", "after a long day", "for the whole family", "near the old road",
         "in the small town", "during the winter", "without any help", "because it was late", "at the end of it"]

_LINK = ["while the", "and then the", "so that the", "even if the", "until the", "although the", "since the"]
_END = ["agree", "return home", "have rested", "were waiting", "wake up", "sing loudly", "move on", "look away"]

GERMAN = ("Die Stadt liegt an einem breiten Fluss, und jeden Morgen gehen die Menschen über die alte Brücke zur "
          "Arbeit. Im Sommer sitzen viele Familien am Ufer, essen zusammen und sprechen über den Tag. Die Kinder "
          "spielen im Garten, während die Großeltern Zeitung lesen und Kaffee trinken. ") * 2
FRENCH = ("La ville se trouve au bord d'une large rivière, et chaque matin les habitants traversent le vieux pont "
          "pour aller travailler. En été, les familles mangent ensemble près de l'eau et parlent de leur journée. "
          "Les enfants jouent dans le jardin pendant que les grands-parents lisent le journal. ") * 2


def english(seed: int, n_sentences: int = 14) -> str:
    """Seeded English prose in a few paragraphs, varied enough for Gopher's repetition checks."""
    rng = random.Random(seed)
    sentences = [
        f"The {rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_VERB)} the {rng.choice(_ADJ)} "
        f"{rng.choice(_NOUN)} {rng.choice(_TAIL)}, {rng.choice(_LINK)} {rng.choice(_NOUN)}s {rng.choice(_END)}."
        for _ in range(n_sentences)
    ]
    return "\n\n".join(" ".join(sentences[i : i + 3]) for i in range(0, n_sentences, 3))


def edit(text: str, rate: float, seed: int) -> str:
    """Replace a fraction `rate` of the words with other words: a near-duplicate at that edit rate."""
    rng = random.Random(seed)
    words = text.split(" ")
    for i in rng.sample(range(len(words)), int(len(words) * rate)):
        words[i] = rng.choice(_NOUN + _ADJ)
    return " ".join(words)


def doc_row(text: str, url: str, **extra) -> dict:
    row = {name: None for name in DOC_SCHEMA.names}
    row.update(
        id=hashlib.sha1(url.encode()).hexdigest(), text=text, url=url, domain=url.split("/")[2],
        fetch_time="2024-05-01T12:00:00Z", http_status=200, content_hash=hashlib.sha256(text.encode()).hexdigest(),
        warc_file="crawl-00000.warc.gz", warc_record_id=f"<urn:uuid:{hashlib.md5(url.encode()).hexdigest()}>",
    )
    row.update(extra)
    return row


def write_docset(rows: list[dict], out: Path, n_files: int = 1) -> DocSet:
    """Rows → `docs_NNNNN.parquet` with DOC_SCHEMA and a finished manifest, like the crawl stage's output."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n_files):
        part = rows[i::n_files]
        name = f"docs_{i:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(part, schema=DOC_SCHEMA), out / name)
        files.append(name)
    ref = DocSet(path=str(out), files=files, n_docs=len(rows))
    return finish_stage(out, ref, stats={"docs": len(rows)}, files=files)
