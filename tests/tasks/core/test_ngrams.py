"""The 13-gram index against lm-evaluation-harness's own decontamination code (its Janitor, Python mode)."""

from __future__ import annotations

import pytest

from tasks.core.ngrams import NGramIndex, ngram_hashes, ngrams, words

TEXTS = [
    "Don't PANIC: the Quick-brown fox — jumps über 3.14 lazy dogs, (again) and again, while the river carries",
    "  Tabs\tand\nnew lines,,, ; ' \" - -- all vanish: ÉCOLE stays upper-case, as lm-eval only folds ASCII letters ",
    "short one",
]


@pytest.fixture(scope="module")
def janitor():
    from lm_eval.decontamination.janitor import Janitor

    return Janitor()


@pytest.mark.parametrize("text", TEXTS)
def test_words_and_13_grams_are_lm_evals(janitor, text):
    from lm_eval.decontamination.janitor import word_ngrams

    assert words(text) == janitor.normalize_string(text).split()
    assert [" ".join(g) for g in ngrams(words(text))] == list(word_ngrams(janitor.normalize_string(text), 13))


def test_an_item_is_found_when_lm_eval_would_register_it_as_dirt(janitor):
    item = TEXTS[0] + " a lantern past the old mill"
    janitor.register_contaminant_python(item)  # lm-eval's set of the item's 13-grams
    index = NGramIndex({"set": {"7": [item], "8": [TEXTS[2]]}})
    assert len(index.hashes) == len(janitor.dirt_ngrams)
    assert index.short == {"set": ["8"]}  # under 13 words: no n-gram, never contaminated
    page = "Intro text here. " + item.upper().replace("Ü", "ü") + " and more"  # case and punctuation do not matter
    (key, gram), = index.matches(page)
    assert key == ("set", "7") and gram in janitor.dirt_ngrams
    twelve = " ".join(words(item)[:12])  # one word short of a 13-gram
    assert index.first_match(f"{twelve} ... {twelve}") is None


def test_a_hash_hit_is_confirmed_on_the_words():
    index = NGramIndex({"set": {"0": ["one two three four five six seven eight nine ten eleven twelve thirteen"]}})
    other = "a b c d e f g h i j k l m".split()
    index.hashes[:] = ngram_hashes(other)  # force a "collision": the index holds another n-gram's hash
    assert index.first_match(" ".join(other)) is None
