"""The bad-word list and bad-word density that every toxicity check uses: curation, SFT data, safety probes.

The list ships in the `better-profanity` package (no download), minus words that are everyday or technical
vocabulary. Density = bad words / words, both counted as lower-cased `\\w+` tokens.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_WORD = re.compile(r"\w+", re.UNICODE)

# better-profanity's list is a chat censor's: it holds everyday and technical words (`len` and `meth` are Python
# identifiers, `kill` a Unix command, `foobar` a placeholder) that are not evidence of toxic text.
BAD_WORD_ALLOWLIST = frozenset(
    "len meth foobar kill god fat pot ugly maxi oral womb hemp hiv pawn rum loin lust racy ovum hell damn crap gay "
    "gays weed wad whiz pms omg lmao wtf uzi pcp nazi klan kkk hump dink dong knob mams prig teat tush wang pee poop "
    "tit cum xx jerk lech herp".split()
)


@cache
def bad_words() -> frozenset[str]:
    """English bad-word list shipped in the `better-profanity` package, minus `BAD_WORD_ALLOWLIST` (lower case;
    some entries are phrases, which only the C4 rule's regex can match)."""
    import better_profanity

    path = Path(better_profanity.__file__).parent / "profanity_wordlist.txt"
    words = {w.strip().lower() for w in path.read_text().splitlines() if w.strip()}
    return frozenset(words - BAD_WORD_ALLOWLIST)


def bad_word_counts(text: str) -> tuple[int, int]:
    """(bad words, words) in `text`."""
    words = _WORD.findall(text.lower())
    vocab = bad_words()
    return sum(w in vocab for w in words), len(words)


def is_toxic(text: str, max_ratio: float, min_bad_words: int = 2) -> tuple[bool, float]:
    """(too many bad words?, bad-word share): one stray word in a short text is not toxicity."""
    n_bad, n_words = bad_word_counts(text)
    ratio = n_bad / max(n_words, 1)
    return n_bad >= min_bad_words and ratio > max_ratio, ratio
