from pathlib import Path

import pytest
import yaml
from test_pipeline import SCALED_DOWN
from tiny_corpus import write_site

from flows.presets import load_config


@pytest.mark.slow
def test_sweep_logs_child_runs_and_writes_the_best_override(prefect_server, lmforge_home: Path, tmp_path: Path):
    from flows.sweep import SweepConfig, sweep
    from tasks.core.tracking import client, experiment_id
    from tasks.train.sweep import SweepSpace

    site = tmp_path / "site"
    write_site(site, n_pages=20, seed=2)
    base = load_config("tiny_cpu", overrides=[f"crawl.local_site.roots={{tiny: '{site}'}}", *SCALED_DOWN,
                                              "evaluate.safety_prompts=[]"])
    space = SweepSpace(params={"lr": [1e-4, 3e-3], "model.arch": ["gpt", "gcnn"]}, mode="random", n_trials=2,
                       budget_seconds=8)
    best_file = sweep(SweepConfig(base=base, space=space))

    runs = client(base.tracking).search_runs([experiment_id(base.tracking)])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {r.info.run_id for r in runs if r not in children}
    best_run = min(children, key=lambda r: r.data.metrics["val_bpb"])
    best = yaml.safe_load(best_file.read_text())["train"]
    assert best["lr"] == float(best_run.data.params["train.lr"])
    assert best["model"]["arch"] == best_run.data.params["train.model.arch"]
    assert load_config("tiny_cpu", best_file).train.lr == best["lr"]  # usable as --config
