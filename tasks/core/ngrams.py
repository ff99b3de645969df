"""Word 13-gram overlap between eval items and training text: lm-evaluation-harness's decontamination definition.

Normalisation is lm-eval's `Janitor.normalize_string` (`lm_eval/decontamination/janitor.py`, the Python path that
`get_train_overlap` and `scripts/clean_training_data` use): ASCII capitals become lower case and every character of
`string.punctuation` is deleted (other characters, non-ASCII letters included, are kept as they are); the result is
split on whitespace and an n-gram is `n` consecutive words (`word_ngrams`, n = 13). lm-eval normalises the whole
text before splitting, so "don't" is the word "dont" and a lone "-" disappears. An eval item with fewer than 13
words has no 13-gram: lm-eval can never flag it, and neither do we; such items are counted as `short` so a report
says how many could not be checked (we do not fall back to shorter n-grams, which match ordinary phrases).

Scale: the index holds one 64-bit hash per distinct eval n-gram (a sorted numpy array, 8 bytes each, plus the
index of the item it belongs to) and training text is streamed past it: per document, hash every 13-gram and
look them up in one vectorised `searchsorted`. A hash hit is confirmed on the n-gram's words, so a collision never
flags an item. The hashes are Python's tuple hash of the words, which is salted per process: an index is built in
the process that uses it (it takes well under a second for a few thousand items) and never saved.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

N = 13
_NORMALISE = str.maketrans(string.ascii_lowercase + string.ascii_uppercase, string.ascii_lowercase * 2,
                           string.punctuation)


def words(text: str) -> list[str]:
    """lm-eval's normalised words of `text`: ASCII lower-cased, ASCII punctuation deleted, split on whitespace."""
    return text.translate(_NORMALISE).split()


def ngrams(tokens: list[str], n: int = N) -> Iterator[tuple[str, ...]]:
    return zip(*(tokens[i:] for i in range(n)))


def ngram_hashes(tokens: list[str], n: int = N) -> np.ndarray:
    """(len(tokens) - n + 1,) int64 hashes of the n-grams of `tokens`, in order (empty when fewer than n words)."""
    count = max(0, len(tokens) - n + 1)
    return np.fromiter(map(hash, ngrams(tokens, n)), dtype=np.int64, count=count)


@dataclass(frozen=True)
class Overlap:
    """The first training text found sharing an n-gram with an eval item, and that n-gram."""

    eval_set: str
    item: str
    doc: str
    ngram: str


@dataclass
class NGramIndex:
    """The n-grams of every item of some eval sets: `items[set][item id]` lists the item's texts (an item may have
    several, e.g. its context followed by each of its choices)."""

    items: dict[str, dict[str, list[str]]]
    n: int = N
    keys: list[tuple[str, str]] = field(init=False)  # (eval set, item id) per owner number
    short: dict[str, list[str]] = field(init=False)  # per eval set: the items with fewer than n words
    hashes: np.ndarray = field(init=False)  # (H,) sorted int64
    owners: np.ndarray = field(init=False)  # (H,) int32 owner number of each hash (one hash, several items: repeated)

    def __post_init__(self) -> None:
        self.keys, self.short = [], {}
        hashes, owners = [], []
        for eval_set, items in self.items.items():
            self.short[eval_set] = []
            for item, texts in items.items():
                found = np.unique(np.concatenate([ngram_hashes(words(t), self.n) for t in texts] or [np.zeros(0)]))
                if not len(found):
                    self.short[eval_set].append(item)
                    continue
                hashes.append(found.astype(np.int64))
                owners.append(np.full(len(found), len(self.keys), dtype=np.int32))
                self.keys.append((eval_set, item))
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.int64)
        order = np.argsort(all_hashes, kind="stable")
        self.hashes = all_hashes[order]
        self.owners = (np.concatenate(owners) if owners else np.zeros(0, dtype=np.int32))[order]
        self._grams: dict[int, set[tuple[str, ...]]] = {}

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.owners.nbytes)

    def _item_grams(self, owner: int) -> set[tuple[str, ...]]:
        if owner not in self._grams:
            eval_set, item = self.keys[owner]
            self._grams[owner] = {g for t in self.items[eval_set][item] for g in ngrams(words(t), self.n)}
        return self._grams[owner]

    def matches(self, text: str) -> Iterator[tuple[tuple[str, str], str]]:
        """((eval set, item id), the shared n-gram) for every item sharing an n-gram with `text` (once per item)."""
        tokens = words(text)
        found = ngram_hashes(tokens, self.n)
        if not len(found) or not len(self.hashes):
            return
        at = np.searchsorted(self.hashes, found).clip(max=len(self.hashes) - 1)
        seen: set[int] = set()
        for pos in np.flatnonzero(self.hashes[at] == found):
            gram = tuple(tokens[pos : pos + self.n])
            start = int(at[pos])
            while start < len(self.hashes) and self.hashes[start] == found[pos]:
                owner = int(self.owners[start])
                if owner not in seen and gram in self._item_grams(owner):  # confirmed on the words, not the hash
                    seen.add(owner)
                    yield self.keys[owner], " ".join(gram)
                start += 1

    def first_match(self, text: str) -> tuple[tuple[str, str], str] | None:
        return next(self.matches(text), None)

    def overlaps(self, docs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Overlap]:
        """Stream (doc id, text) pairs past the index: the first overlapping document of each contaminated item."""
        found: dict[tuple[str, str], Overlap] = {}
        for doc_id, text in docs:
            for key, gram in self.matches(text):
                found.setdefault(key, Overlap(key[0], key[1], doc_id, gram))
        return found
