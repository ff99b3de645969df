"""Filtering a streamed answer with a whole-text filter (the PII scrubber) without leaking or losing text.

A filter like `scrub_pii` rewrites spans it can only recognise whole: the start of an e-mail address looks like any
word until the `@`. So the stream keeps an unsent buffer and sends only a head it can prove settled: cut at a
whitespace at least `hold` characters before the end of the buffer (or, inside an unbroken run, `max_span`
characters back), and only where filtering head and tail apart gives exactly what filtering them together gives
(no match crosses the cut). What was sent is never revised, every character of the buffer is sent at the end, and
the whole stream equals `filter(answer)` as long as

- a match containing whitespace (a phone number, a grouped card number) is shorter than `hold` characters, and
- a match without whitespace (an e-mail address, an IP) is shorter than `max_span` characters (RFC 5321 caps an
  address at 254),

which holds for `tasks.core.pii` (property-tested in tests/tasks/serve/test_stream_filter.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

HOLD_CHARS = 48  # longer than any whitespace-containing span the scrubber matches (a grouped card: 37)
MAX_SPAN_CHARS = 256  # longer than any e-mail address (254)
MAX_CUTS_TRIED = 8  # candidate cuts checked per delta, newest first; bounds the filter's cost per token


class StreamFilter:
    """`push(delta)` returns the filtered text that is now safe to send; `flush()` the rest at the end."""

    def __init__(self, text_filter: Callable[[str], str], hold: int = HOLD_CHARS, max_span: int = MAX_SPAN_CHARS):
        self.text_filter, self.hold, self.max_span = text_filter, hold, max_span
        self.buffer = ""

    def cuts(self) -> Iterator[int]:
        """Candidate cut positions, newest first: just after a whitespace that has `hold` characters after it,
        and the position `max_span` back from the end."""
        end = len(self.buffer) - self.hold
        forced = len(self.buffer) - self.max_span
        tried = 0
        for i in range(end, 0, -1):
            if tried >= MAX_CUTS_TRIED or i <= forced:
                break
            if self.buffer[i - 1].isspace():
                tried += 1
                yield i
        if forced > 0:
            yield forced

    def push(self, delta: str) -> str:
        self.buffer += delta
        if len(self.buffer) <= self.hold:
            return ""
        whole = self.text_filter(self.buffer)
        for cut in self.cuts():
            head = self.text_filter(self.buffer[:cut])
            if whole == head + self.text_filter(self.buffer[cut:]):
                self.buffer = self.buffer[cut:]
                return head
        return ""

    def flush(self) -> str:
        out, self.buffer = self.text_filter(self.buffer), ""
        return out


def filtered_stream(deltas: Iterable[str], text_filter: Callable[[str], str]) -> Iterator[str]:
    """The deltas of a stream with `text_filter` applied as `StreamFilter` does (empty deltas are not yielded)."""
    stream = StreamFilter(text_filter)
    for delta in deltas:
        if out := stream.push(delta):
            yield out
    if out := stream.flush():
        yield out
