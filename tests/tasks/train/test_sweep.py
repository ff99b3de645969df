import math

import pytest
from pydantic import ValidationError

from tasks.train.sweep import SweepSpace, TrialResult, best_trial, expand_trials, trial_config
from tasks.train.train import TrainConfig


def test_grid_is_every_combination_and_random_draws_a_seeded_subset():
    space = SweepSpace(params={"lr": [1e-3, 3e-3], "model.n_layer": [2, 4, 6]})
    grid = expand_trials(space)
    assert len(grid) == 6 and {"lr": 3e-3, "model.n_layer": 6} in grid
    drawn = expand_trials(space.model_copy(update={"mode": "random", "n_trials": 3, "seed": 1}))
    assert len(drawn) == 3 and all(t in grid for t in drawn)
    assert drawn == expand_trials(space.model_copy(update={"mode": "random", "n_trials": 3, "seed": 1}))


def test_trial_config_sets_nested_fields_and_budget():
    cfg = trial_config(TrainConfig(), {"lr": 0.01, "model.arch": "rnn", "model.n_layer": 3}, budget_seconds=30)
    assert (cfg.lr, cfg.model.arch, cfg.model.n_layer, cfg.max_seconds) == (0.01, "rnn", 3, 30)
    assert trial_config(TrainConfig(nproc_per_node=8), {}, budget_seconds=30).nproc_per_node == 1  # one GPU a trial
    with pytest.raises(ValidationError, match="no_such"):
        trial_config(TrainConfig(), {"model.no_such": 1}, budget_seconds=30)


def test_best_trial_is_the_lowest_finite_metric():
    results = [
        TrialResult(params={"lr": lr}, metric=m, run_id=str(i), checkpoint="")
        for i, (lr, m) in enumerate([(1e-3, 2.5), (3e-3, 2.1), (1e-2, math.nan)])
    ]
    assert best_trial(results).params == {"lr": 3e-3}
