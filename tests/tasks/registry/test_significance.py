"""The gate's paired bootstrap: known cases, the resample statistic equals ItemScores.aggregate, seeded, paired."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tasks.evaluate.items import ItemScores
from tasks.registry.register import RegisterConfig
from tasks.registry.significance import aggregate_counts, paired, paired_bootstrap, resample_counts


def ratio(values, weights, ids=None) -> ItemScores:
    ids = ids or [str(i) for i in range(len(values))]
    return ItemScores(metric="val_bpb", kind="ratio", ids=ids, values=list(values), weights=list(weights))


def mean(values, ids=None, metric="arc_acc") -> ItemScores:
    return ItemScores(metric=metric, kind="mean", ids=ids or [str(i) for i in range(len(values))], values=list(values))


def centered(values, groups) -> ItemScores:
    return ItemScores(metric="core", kind="centered", ids=[str(i) for i in range(len(values))], values=list(values),
                      groups=list(groups), baselines={"a": 0.25, "b": 0.5})


def test_the_resample_statistic_is_aggregate_over_the_draw():
    rng = np.random.default_rng(3)
    n = 12
    cases = [ratio(rng.uniform(1, 9, n), rng.integers(50, 500, n)), mean(rng.integers(0, 2, n)),
             centered(rng.integers(0, 2, n), ["a"] * 5 + ["b"] * 7)]
    draws = [rng.integers(0, n, n).tolist() for _ in range(20)] + [[0, 0, 1], [6, 7, 7]]  # last: task "a" not drawn
    for scores in cases:
        counts = np.stack([np.bincount(keep, minlength=n) for keep in draws]).astype(float)
        expected = [scores.aggregate(keep) for keep in draws]
        assert aggregate_counts(scores, counts) == pytest.approx(expected, rel=1e-12)


def test_ratio_is_bits_over_bytes_not_a_mean_of_ratios():
    # one long document the challenger does badly on, many short ones it does a little better on
    old = ratio([100.0] + [10.0] * 9, [100.0] + [10.0] * 9)  # 1 bit per byte everywhere
    new = ratio([130.0] + [9.0] * 9, [100.0] + [10.0] * 9)
    result = paired_bootstrap(new, old)
    assert result.difference == pytest.approx((130 + 81) / 190 - 1.0)  # worse overall: Σbits / Σbytes
    assert np.mean([1.3] + [0.9] * 9) - 1.0 < 0  # a mean of per-document ratios would have called it better
    assert result.unit == "docs" and result.n == 10


def test_a_uniform_shift_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    bits, nbytes = rng.uniform(500, 1500, 40), rng.integers(400, 1200, 40).astype(float)
    old = ratio(bits, nbytes)
    better = ratio(bits * 0.98, nbytes)  # 2 % fewer bits on every document
    shift = paired_bootstrap(better, old)
    assert shift.high < 0 and shift.gain_bound(lower_is_better=True) > 0
    assert shift.low <= shift.difference <= shift.high
    noisy = ratio(bits * rng.normal(1.0, 0.05, 40), nbytes)  # same model on average, per-document noise
    noise = paired_bootstrap(noisy, old)
    assert noise.low < 0 < noise.high and noise.gain_bound(lower_is_better=True) < 0


def test_identical_models_have_a_zero_width_interval_and_one_item_is_a_point():
    old = mean([1, 0, 1, 1, 0])
    same = paired_bootstrap(old, old)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    one = paired_bootstrap(ratio([9.0], [10.0]), ratio([10.0], [10.0]))
    assert one.low == one.high == pytest.approx(-0.1) and "(95 %, 1 doc)" in one.describe()


def test_accuracy_bounds_match_the_binomial_width():
    # new wins 30 more items than old out of 400 discordant-free pairs: the mean difference's bootstrap spread is
    # the paired standard error sqrt(p(1-p)/n) of the per-item differences
    diff = np.array([1] * 30 + [0] * 370)
    old, new = mean(np.zeros(400)), mean(diff)
    result = paired_bootstrap(new, old, resamples=4000)
    se = math.sqrt(0.075 * 0.925 / 400)
    assert result.difference == pytest.approx(0.075)
    assert result.low == pytest.approx(0.075 - 1.645 * se, abs=0.006)
    assert result.high == pytest.approx(0.075 + 1.645 * se, abs=0.006)


def test_seeded_and_reproducible():
    rng = np.random.default_rng(1)
    old, new = ratio(rng.uniform(1, 9, 30), [100.0] * 30), ratio(rng.uniform(1, 9, 30), [100.0] * 30)
    assert paired_bootstrap(new, old, seed=7) == paired_bootstrap(new, old, seed=7)
    assert paired_bootstrap(new, old, seed=7) != paired_bootstrap(new, old, seed=8)
    blocks = list(resample_counts(50, 1000, seed=0))
    assert sum(len(b) for b in blocks) == 1000 and all((b.sum(axis=1) == 50).all() for b in blocks)


def test_pairs_on_shared_ids_whatever_the_order():
    new = mean([1, 0, 1], ids=["x", "y", "z"])
    old = mean([0, 1, 1, 1], ids=["z", "x", "w", "y"])
    a, b = paired(new, old)
    assert a.ids == b.ids == ["x", "y", "z"] and b.values == [1, 1, 0]
    assert paired_bootstrap(new, old).n == 3
    with pytest.raises(ValueError, match="share no scored item"):
        paired_bootstrap(mean([1], ids=["a"]), mean([1], ids=["b"]))


def test_centered_takes_the_mean_over_tasks():
    old = centered([0] * 4 + [1] * 4, ["a"] * 4 + ["b"] * 4)  # a: 0 % (baseline 25 %), b: 100 % (baseline 50 %)
    new = centered([1] * 4 + [1] * 4, ["a"] * 4 + ["b"] * 4)
    assert old.aggregate() == pytest.approx(((0 - 0.25) / 0.75 + 1.0) / 2)
    assert paired_bootstrap(new, old).difference == pytest.approx(new.aggregate() - old.aggregate())



def test_seed_noise_widens_the_bounds_around_the_same_estimate():
    rng = np.random.default_rng(2)
    bits, nbytes = rng.uniform(500, 1500, 40), rng.integers(400, 1200, 40).astype(float)
    old, new = ratio(bits, nbytes), ratio(bits * 0.99, nbytes)
    items_only, with_runs = paired_bootstrap(new, old), paired_bootstrap(new, old, seed_noise=0.02)
    assert with_runs.difference == items_only.difference
    assert with_runs.low < items_only.low and with_runs.high > items_only.high
    # the run noise dominates here: the half-width is about z * sqrt(2) * seed_noise
    assert (with_runs.high - with_runs.low) / 2 == pytest.approx(1.645 * math.sqrt(2) * 0.02, rel=0.1)
    assert with_runs.gain_bound(lower_is_better=True) < 0 < items_only.gain_bound(lower_is_better=True)


def test_seed_noise_measured_over_few_runs_widens_the_bound_to_students_t():
    """The run noise alone (identical items): its one-sided 95 % bound is sqrt(2) sigma times the normal quantile
    when sigma is exact, times Student's t quantile with k - 1 degrees of freedom when k runs estimated it."""
    same = ratio(np.full(30, 1000.0), np.full(30, 800.0))
    sigma = 0.01
    exact = paired_bootstrap(same, same, resamples=20000, seed_noise=sigma)
    assert exact.high == pytest.approx(stats.norm.ppf(0.95) * math.sqrt(2) * sigma, rel=0.05)
    for runs in (3, 4, 8):
        estimated = paired_bootstrap(same, same, resamples=20000, seed_noise=sigma, seed_noise_runs=runs)
        assert estimated.high == pytest.approx(stats.t.ppf(0.95, runs - 1) * math.sqrt(2) * sigma, rel=0.05)
        assert estimated.high > exact.high and estimated.difference == 0.0
    with pytest.raises(ValueError, match="at least 2 runs"):
        paired_bootstrap(same, same, seed_noise=sigma, seed_noise_runs=1)
    with pytest.raises(ValueError, match="at least 2 runs"):
        RegisterConfig(seed_noise={"val_bpb": sigma}, seed_noise_runs=1)
