"""Word 13-gram overlap between eval items and training text: lm-evaluation-harness's decontamination definition.

Normalisation is lm-eval's `Janitor.normalize_string` (`lm_eval/decontamination/janitor.py`, the Python path that
`get_train_overlap` and `scripts/clean_training_data` use): ASCII capitals become lower case and every character of
`string.punctuation` is deleted (other characters, non-ASCII letters included, are kept as they are); the result is
split on whitespace and an n-gram is `n` consecutive words (`word_ngrams`, n = 13). lm-eval normalises the whole
text before splitting, so "don't" is the word "dont" and a lone "-" disappears. An eval item with fewer than 13
words has no 13-gram: lm-eval can never flag it, and neither do we; such items are counted as `short` so a report
says how many could not be checked (we do not fall back to shorter n-grams, which match ordinary phrases).

Scale: the index holds one 64-bit hash per distinct eval n-gram (a sorted numpy array, 8 bytes each, plus the
4-byte number of the item it belongs to and 2 bytes of a bitmap prefilter) and training text is streamed past it:
per document, hash every 13-gram, drop those the bitmap rules out and look the rest up in one `searchsorted`. A
hash hit is confirmed on the n-gram's words, so a collision never flags an item. The word hashes are Python's
string hash, which is salted per process: an index is built in the process that uses it (seconds for the full
HellaSwag, ARC and LAMBADA files) and never saved.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

N = 13
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so the polynomial keeps every bit of each word's hash
# lm-eval's str.maketrans table as a byte table: in UTF-8 every byte below 0x80 is an ASCII character and no byte
# of a multi-byte character is, so translating the encoded bytes is the same as translating the characters (4x faster)
_LOWER = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())
_PUNCTUATION = string.punctuation.encode()


def words(text: str) -> list[str]:
    """lm-eval's normalised words of `text`: ASCII lower-cased, ASCII punctuation deleted, split on whitespace."""
    encoded = text.encode("utf-8", "surrogatepass")
    return encoded.translate(_LOWER, _PUNCTUATION).decode("utf-8", "surrogatepass").split()


def ngrams(tokens: list[str], n: int = N) -> Iterator[tuple[str, ...]]:
    return zip(*(tokens[i:] for i in range(n)))


def ngram_hashes(tokens: list[str], n: int = N) -> np.ndarray:
    """(len(tokens) - n + 1,) uint64 hashes of the n-grams of `tokens`, in order (empty when fewer than n words):
    each word hashed once, then a polynomial over each window of n word hashes (Horner, wrapping mod 2^64), in n
    vectorised steps rather than one Python call per n-gram."""
    count = len(tokens) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    words_hashed = np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens)).view(np.uint64)
    out = np.zeros(count, dtype=np.uint64)
    for j in range(n):
        out *= _MULTIPLIER
        out += words_hashed[j : j + count]
    return out


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
    hashes: np.ndarray = field(init=False)  # (H,) sorted uint64
    owners: np.ndarray = field(init=False)  # (H,) int32 owner number of each hash (one hash, several items: repeated)

    def __post_init__(self) -> None:
        self.keys, self.short = [], {}
        hashes, owners = [], []
        for eval_set, items in self.items.items():
            self.short[eval_set] = []
            for item, texts in items.items():
                found = np.unique(np.concatenate([ngram_hashes(words(t), self.n) for t in texts] or
                                                 [np.zeros(0, dtype=np.uint64)]))
                if not len(found):
                    self.short[eval_set].append(item)
                    continue
                hashes.append(found)
                owners.append(np.full(len(found), len(self.keys), dtype=np.int32))
                self.keys.append((eval_set, item))
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
        order = np.argsort(all_hashes, kind="stable")
        self.hashes = all_hashes[order]
        self.owners = (np.concatenate(owners) if owners else np.zeros(0, dtype=np.int32))[order]
        # A bitmap of 16 bits per hash (a power of two, low hash bits) answers "surely absent" for ~94 % of a
        # document's n-grams from cache, before the binary search in the sorted array.
        self._mask = np.uint64(max(1 << 16, 1 << int(16 * max(1, len(self.hashes))).bit_length()) - 1)
        self._bits = np.zeros((int(self._mask) + 1) // 8, dtype=np.uint8)
        np.bitwise_or.at(self._bits, (self.hashes & self._mask) >> np.uint64(3),
                         np.left_shift(1, (self.hashes & np.uint64(7)).astype(np.uint8)).astype(np.uint8))
        self._grams: dict[int, set[tuple[str, ...]]] = {}

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.owners.nbytes + self._bits.nbytes)

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
        low = found & self._mask
        maybe = np.flatnonzero((self._bits[low >> np.uint64(3)] >> (low & np.uint64(7)).astype(np.uint8)) & 1)
        at = np.searchsorted(self.hashes, found[maybe]).clip(max=len(self.hashes) - 1)
        hit = self.hashes[at] == found[maybe]
        seen: set[int] = set()
        for pos, start in zip(maybe[hit].tolist(), at[hit].tolist()):
            gram = tuple(tokens[pos : pos + self.n])
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
