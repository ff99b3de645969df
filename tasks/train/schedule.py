"""The learning-rate schedule every training method runs on: `Schedule` (warmup, decay shape, floor, horizon) and
its multiplier of a param group's peak lr at a step. Pretraining builds one from `TrainConfig.lr_schedule()`, SFT,
DPO and the classification head from their own configs, so each method's floor is stated where it is configured."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

DecayShape = Literal["cosine", "wsd", "constant"]


@dataclass(frozen=True)
class Schedule:
    max_steps: int  # the horizon the decay spans
    warmup_steps: int = 0  # linear warmup from 1/warmup_steps to 1
    shape: DecayShape = "cosine"  # after warmup: cosine to the floor, warmup-stable-decay, or none
    floor: float = 0.0  # the final multiplier (min_lr_ratio)
    decay_fraction: float = 0.2  # wsd: share of the run spent decaying
    max_seconds: float | None = None  # a time budget: the decay follows whichever of steps or seconds runs out first

    def multiplier(self, step: int, elapsed: float = 0.0) -> float:
        """Factor of the peak lr at `step` (0-based) after `elapsed` training seconds."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(self.max_steps - self.warmup_steps, 1)  # the post-warmup run
        if self.max_seconds:
            progress = max(progress, elapsed / self.max_seconds)
        progress = min(progress, 1.0)
        if self.shape == "constant":
            return 1.0
        if self.shape == "wsd":
            start = 1.0 - self.decay_fraction
            return 1.0 if progress < start else 1.0 - (1.0 - self.floor) * (progress - start) / self.decay_fraction
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def done(self, step: int, elapsed: float) -> bool:
        """Whether the run is over: the horizon reached, or the time budget spent."""
        return step >= self.max_steps or bool(self.max_seconds and elapsed >= self.max_seconds)
