"""The KV cache type (`models.decoding.kv_cache`): views advance the rows they name, lengths are shared, overflow and
rows of different lengths advancing together are refused."""

from __future__ import annotations

import pytest
import torch

from models.decoding.kv_cache import KVCache


def test_views_write_their_rows_and_share_the_lengths():
    cache = KVCache.empty(2, (3, 1, 8, 4), torch.zeros(1))
    assert cache.max_len == 8 and cache.lengths == [0, 0, 0]
    view = cache.at([1])
    k = torch.ones(1, 1, 5, 4)
    keys, _ = view.append(0, k, 2 * k)
    assert keys.shape == (1, 1, 5, 4) and view.start == 0
    view.advance(5)
    assert cache.lengths == [0, 5, 0] and cache.values[0][1, 0, :5].eq(2).all() and cache.keys[0][0].eq(0).all()
    step = cache.at([0, 1], step=True)  # one position each, at its own length
    assert step.pos.tolist() == [0, 5] and step.start == 5
    keys, _ = step.scatter(1, torch.full((2, 1, 1, 4), 3.0), torch.zeros(2, 1, 1, 4))
    assert keys.shape == (2, 1, 6, 4) and cache.keys[1][0, 0, 0].eq(3).all() and cache.keys[1][1, 0, 5].eq(3).all()
    step.advance(1)
    assert cache.lengths == [1, 6, 0]


def test_overflow_and_unequal_rows_advancing_together_are_refused():
    cache = KVCache.empty(1, (2, 1, 4, 2), torch.zeros(1))
    with pytest.raises(ValueError, match="holds 4 positions"):
        cache.at([0]).append(0, torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2))
    cache.lengths[0] = 2
    with pytest.raises(ValueError, match="equally long"):
        cache.at([0, 1])
