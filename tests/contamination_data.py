"""A crawl salted with benchmark items, for the contamination tests: tiny HellaSwag (6-line) and ARC (JSONL) files
of seeded items, and ordinary pages (`curate_data.english`) of which some carry one item each, as a page that
republishes a benchmark would. The items use other sentence patterns than the ordinary pages, so no 13-gram is
shared by accident (the tests check that with lm-evaluation-harness's own n-gram code)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from curate_data import doc_row, english, write_docset

from tasks.core.artifacts import DocSet

PEOPLE = ["a young woman", "an old man", "two boys", "the chef", "a coach", "the musician", "a gardener", "the nurse",
          "a pilot", "the baker", "a tailor", "the judge"]
ACTIONS = ["is kneeling beside", "walks slowly toward", "is pointing at", "carefully lifts", "is painting",
           "quickly cleans", "is standing on", "gently pushes", "is sitting next to", "throws a ball over"]
THINGS = ["a wooden ladder", "the red bicycle", "a frozen lake", "the large oven", "a metal fence", "the green sofa",
          "a tall cactus", "the empty pool", "a paper kite", "the stone wall", "a silver trumpet", "the rowing boat"]
ENDINGS = ["then smiles at the camera and waves", "and the crowd begins to cheer loudly",
           "before putting on a pair of gloves", "while a dog runs around in circles",
           "and explains each step to the viewers", "until the music stops",
           "and then falls over into the grass", "as the sun sets behind the hills"]
N_HELLASWAG, N_ARC = 40, 10
SALTED_HELLASWAG = list(range(0, 40, 2))  # 20 items, each republished on a page of the crawl
SALTED_ARC = [0, 1, 2, 3, 4]  # the five long ARC questions
SHORT_ARC = [8, 9]  # fewer than 13 words even with a choice: cannot be checked (lm-eval's rule)


def hellaswag_items(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    items = []
    for i in range(N_HELLASWAG):
        who, other = rng.sample(PEOPLE, 2)
        # the item's number sits within 12 words of each ending: every 13-gram of an item touching the shared
        # endings carries it
        ctx = (f"Scene {i}: {who} {rng.choice(ACTIONS)} {rng.choice(THINGS)} while {other} "
               f"{rng.choice(ACTIONS)} {rng.choice(THINGS)}. In shot {i}, {who}")
        items.append({"ctx": ctx, "label": rng.randrange(4), "endings": rng.sample(ENDINGS, 4)})
    return items


def arc_items(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(N_ARC):
        a, b, c = rng.sample(THINGS, 3)
        if i in SHORT_ARC:
            stem = f"Which is heavier, {a.split()[-1]}?"
        else:
            # no stretch of 12 words without the item's number: no 13-gram recurs in another question
            stem = (f"Experiment {i}: {a} next to {b} in lab {i} is heated for ten minutes; in experiment {i} why "
                    f"does {c} stay cold?")
        choices = [{"label": label, "text": text} for label, text in zip("ABCD", rng.sample(
            ["it reflects light", "it holds water", "it is hollow", "it conducts heat", "it is painted"], 4))]
        rows.append({"id": f"arc-{i}", "question": {"stem": stem, "choices": choices},
                     "answerKey": "ABCD"[rng.randrange(4)]})
    return rows


def write_hellaswag(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(f"{it['ctx']}\n{it['label']}\n" + "".join(f"{e}\n" for e in it["endings"]) for it in items))
    return path


def write_arc(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def salted_pages() -> tuple[list[dict], dict[str, str]]:
    """(DOC_SCHEMA rows, url → the benchmark item it carries as 'hellaswag/<i>' or 'arc/<i>'): 15 ordinary pages and
    25 pages that each quote one item inside ordinary prose."""
    hs, arc = hellaswag_items(), arc_items()
    rows, salted = [], {}
    for seed in range(15):
        rows.append(doc_row(english(100 + seed), f"http://site.test/plain-{seed}.html"))
    quotes = [(f"hellaswag/{i}", f"{hs[i]['ctx']} {hs[i]['endings'][hs[i]['label']]}.") for i in SALTED_HELLASWAG]
    for i in SALTED_ARC:
        q = arc[i]
        answer = next(c["text"] for c in q["question"]["choices"] if c["label"] == q["answerKey"])
        quotes.append((f"arc/{i}", f"{q['question']['stem']} The answer: {answer}."))
    for n, (item, quote) in enumerate(quotes):
        url = f"http://site.test/quiz-{n}.html"
        rows.append(doc_row(f"{english(200 + n, 6)}\n\n{quote}\n\n{english(300 + n, 6)}", url))
        salted[url] = item
    return rows, salted


def salted_crawl(root: Path) -> tuple[DocSet, dict[str, str], Path, Path]:
    """The salted crawl as a DocSet (the crawl stage's output format) and the two benchmark files."""
    rows, salted = salted_pages()
    docs = write_docset(rows, root / "crawl", n_files=2)
    return docs, salted, write_hellaswag(root / "hellaswag.txt", hellaswag_items()), write_arc(root / "arc.jsonl",
                                                                                               arc_items())
