"""Is a challenger better than the champion, or only luckier? A seeded paired bootstrap over the items both scored.

Both models were scored on the same documents / benchmark items (`tasks.evaluate.items`, one `ItemScores` per
metric). One resample draws n item positions with replacement and computes each model's metric over the same
draw, exactly as `ItemScores.aggregate` would (bits per byte as Σbits / Σbytes, accuracies as the mean, centered
accuracy per task then averaged over the tasks drawn); the difference new - old over many resamples is the
sampling distribution of the difference. Pairing removes what both models share (a hard document is hard for
both), so the interval is far narrower than two separate error bars. The bounds are percentiles: the lower one at
1 - confidence, the upper one at confidence, each a one-sided bound at `confidence` (0.95: the 5th and 95th).

The items' sampling is one source of noise; the training run is another. Two models trained on the same data with
different seeds differ by more than their documents' spread (`bench/gate_noise.py`: tiny models' val_bpb varies by
0.017-0.019 (std) from seed to seed, with intervals of ±0.004 over 54 documents), and that difference does not
shrink with a bigger eval set. So
`seed_noise`, the metric's standard deviation between runs that differ only in their seed (measured by the bench),
adds a draw of the difference between two such runs to every resampled difference: the bounds then cover both.
Champion and challenger each carry one run's noise, so the draw has standard deviation sqrt(2) * seed_noise. The
standard deviation is itself an estimate from a handful of runs (`seed_noise_runs`, k); the difference of two
fresh runs divided by sqrt(2) times that estimate follows Student's t with k - 1 degrees of freedom (a prediction
interval), so with k >= 2 the draw is sqrt(2) * seed_noise * t(k - 1): with 4 runs the 95 % bound sits at
2.35 sqrt(2) sigma instead of the normal 1.64 sqrt(2) sigma, which would promote a same-data retrain more often than
the 5 % the confidence promises (bench/gate_noise.py). With k = 0 the estimate is taken as exact (normal).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tasks.evaluate.items import ItemScores

BLOCK_CELLS = 1 << 22  # resamples x items per block of counts: 32 MiB of float64 at most


@dataclass(frozen=True)
class PairedDifference:
    """new - old of one metric over the paired items, with its bootstrap bounds (in the metric's own units)."""

    metric: str
    difference: float
    low: float  # one-sided lower bound at `confidence`
    high: float  # one-sided upper bound at `confidence`
    confidence: float
    n: int
    unit: str  # what an item is: "docs" for bits per byte, else "items"

    def gain_bound(self, lower_is_better: bool) -> float:
        """The improvement (positive = new is better) that holds at `confidence`: its pessimistic bound."""
        return -self.high if lower_is_better else self.low

    def drop_bound(self, lower_is_better: bool) -> float:
        """The improvement's optimistic bound: below -tolerance, even the best case is a drop beyond tolerance."""
        return -self.low if lower_is_better else self.high

    def describe(self) -> str:
        """`val_bpb −0.0120 [−0.0190, −0.0060] (95 %, 26 docs)`: the difference new - old and its bounds."""
        unit = self.unit[:-1] if self.n == 1 else self.unit
        return (f"{self.metric} {signed(self.difference)} [{signed(self.low)}, {signed(self.high)}] "
                f"({self.confidence * 100:g} %, {self.n} {unit})")


def signed(x: float) -> str:
    """+0.0061 / −0.0061 (a typographic minus, as reports print it)."""
    return f"{x:+.4f}".replace("-", "−")


def paired(new: ItemScores, old: ItemScores) -> tuple[ItemScores, ItemScores]:
    """Both sides restricted to the ids they share, in the same order (new's)."""
    common = set(new.ids) & set(old.ids)
    a = new.subset(common)
    position = {item: i for i, item in enumerate(old.ids)}
    order = [position[item] for item in a.ids]
    b = ItemScores(metric=old.metric, kind=old.kind, ids=[old.ids[i] for i in order],
                   values=[old.values[i] for i in order],
                   weights=[old.weights[i] for i in order] if old.weights else [],
                   groups=[old.groups[i] for i in order] if old.groups else [], baselines=old.baselines)
    return a, b


def resample_counts(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap draws as counts (rows: resamples, columns: how often each of the n items was drawn)."""
    rng = np.random.default_rng(seed)
    block = max(1, BLOCK_CELLS // max(1, n))
    for start in range(0, resamples, block):
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=min(block, resamples - start)).astype(np.float64)


def aggregate_counts(scores: ItemScores, counts: np.ndarray) -> np.ndarray:
    """The metric of each resample (counts (B, n)) as `ItemScores.aggregate` computes it over that draw: (B,)."""
    values = np.asarray(scores.values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if scores.kind == "ratio":
            return counts @ values / (counts @ np.asarray(scores.weights, dtype=np.float64))
        if scores.kind == "mean":
            return counts @ values / counts.sum(axis=1)
        groups = np.asarray(scores.groups)
        per_task = []
        for task in sorted(set(scores.groups)):  # a task no item of which was drawn is left out, as aggregate does
            mask, base = groups == task, scores.baselines[task]
            accuracy = counts[:, mask] @ values[mask] / counts[:, mask].sum(axis=1)
            per_task.append((accuracy - base) / (1 - base))
        return np.nanmean(np.stack(per_task), axis=0)


def check_seed_noise_runs(runs: int) -> int:
    """`runs` as a count of the runs a standard deviation came from: 0 (taken as exact) or at least 2."""
    if runs == 1:
        raise ValueError("seed_noise_runs = 1: a standard deviation needs at least 2 runs (0 = take it as exact)")
    return runs


def run_noise(rng: np.random.Generator, size: int, runs: int) -> np.ndarray:
    """Standardised draws of a same-config difference: Student's t with runs - 1 degrees of freedom (the standard
    deviation was estimated from `runs` runs), or a standard normal when runs = 0."""
    return rng.standard_t(runs - 1, size) if runs >= 2 else rng.standard_normal(size)


def paired_bootstrap(new: ItemScores, old: ItemScores, resamples: int = 2000, confidence: float = 0.95,
                     seed: int = 0, seed_noise: float = 0.0, seed_noise_runs: int = 0) -> PairedDifference:
    """new - old of one metric over the items both scored, with one-sided bounds at `confidence`; `seed_noise`
    (the metric's standard deviation between same-config runs, measured over `seed_noise_runs` runs; 0: taken as
    exact) widens them by the training runs' noise."""
    check_seed_noise_runs(seed_noise_runs)
    if new.kind != old.kind:
        raise ValueError(f"{new.metric}: cannot pair a {new.kind} metric with a {old.kind} one")
    a, b = paired(new, old)
    n = len(a.ids)
    if n == 0:
        raise ValueError(f"{new.metric}: the two models share no scored item")
    draws = resample_counts(n, resamples, seed)
    diffs = np.concatenate([aggregate_counts(a, counts) - aggregate_counts(b, counts) for counts in draws])
    if seed_noise > 0:  # its own stream: the item draws stay those of seed_noise = 0
        diffs = diffs + np.sqrt(2) * seed_noise * run_noise(np.random.default_rng([seed, 1]), len(diffs),
                                                            seed_noise_runs)
    low, high = np.nanquantile(diffs, [1 - confidence, confidence])
    return PairedDifference(metric=new.metric, difference=a.aggregate() - b.aggregate(), low=float(low),
                            high=float(high), confidence=confidence, n=n,
                            unit="docs" if new.kind == "ratio" else "items")
