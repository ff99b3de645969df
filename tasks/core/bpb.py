"""Bits per byte, the one definition the training curve and the evaluation registry's metrics share:
total next-token nats / (ln 2 x UTF-8 bytes of the text those tokens spell), so models with different tokenizers
compare. Both callers pass totals, never a mean per token, so nothing assumes a bytes-per-token ratio twice."""

from __future__ import annotations

import math


def bits_per_byte(nats: float, n_bytes: int | float) -> float:
    """nan when there are no bytes (nothing scored): a missing value, never a flattering zero or inf."""
    return nats / (math.log(2) * n_bytes) if n_bytes > 0 else float("nan")
