"""The ablation flow on a tiny site: 2 recipes × 2 seeds of a tiny proxy from scratch; MLflow parent and child runs,
the table's rows, shared stages computed once (stage cache), recipes limited to the data sections; and the verdict's
permutation test on known numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_corpus import write_site

from flows.presets import load_config
from tasks.ablate.plan import Recipe

TINY_PROXY = [
    "crawl.local_site.port=0", "crawl.extract_workers=0", "curate.tasks=1", "tokenize.vocab_size=300",
    "tokenize.val_fraction=0.2", "train.model.n_layer=1", "train.model.n_embd=32", "train.model.n_head=2",
    "train.model.n_kv_head=1", "train.model.seq_len=32", "train.batch_size=4", "train.warmup_steps=2",
    "train.eval_every=0", "train.progress=false", "train.threads=1", "evaluate.max_val_tokens=2000",
]


@pytest.mark.slow
def test_two_recipes_two_seeds(prefect_server, lmforge_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import tasks.collect.crawl
    import tasks.curate.curate
    import tasks.shard.shard
    import tasks.tokenize.tokenize
    import tasks.train.train
    from flows.ablate import AblationConfig, ablate
    from tasks.core.tracking import client, experiment_id

    # count what each stage really computes (a cached stage is read from its manifest instead)
    calls: dict[str, int] = {}
    for module, name in [(tasks.collect.crawl, "run_crawl"), (tasks.curate.curate, "run_curate"),
                         (tasks.shard.shard, "run_shard"), (tasks.tokenize.tokenize, "run_tokenize"),
                         (tasks.train.train, "run_train")]:
        def counted(*args, _real=getattr(module, name), _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, name, counted)

    site = tmp_path / "site"
    write_site(site, n_pages=16, seed=4)
    base = load_config("tiny_cpu", overrides=[f"crawl.local_site.roots={{tiny: '{site}'}}", *TINY_PROXY])
    recipes = [Recipe(name="baseline"),
               Recipe(name="no-dedup", overrides={"curate.minhash": False, "curate": {"exact_dedup": False}})]
    summary = ablate(AblationConfig(base=base, recipes=recipes, seeds=[0, 1], token_budget=1280))

    # one crawl for both recipes, one curation and shard per recipe, one BPE (the base's data, which the
    # baseline recipe trains on as well) + the other recipe's encoding, one proxy per recipe × seed
    assert calls == {"run_crawl": 1, "run_curate": 2, "run_shard": 2, "run_tokenize": 2, "run_train": 4}

    runs = client(base.tracking).search_runs([experiment_id(base.tracking)])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {summary.parent_run_id}
    assert sorted((r.data.params["recipe"], r.data.params["seed"]) for r in children) == [
        ("baseline", "0"), ("baseline", "1"), ("no-dedup", "0"), ("no-dedup", "1")]
    assert all(r.data.metrics["tokens_seen"] == 1280 for r in children)  # the fixed budget: 10 steps × 4 × 32
    by_arm = {(r.data.params["recipe"], int(r.data.params["seed"])): r.data.metrics["val_bpb"] for r in children}

    assert sorted(row.recipe for row in summary.rows) == ["baseline", "no-dedup"]
    for row in summary.rows:
        assert row.values == [by_arm[(row.recipe, 0)], by_arm[(row.recipe, 1)]]
        assert f"| {row.recipe} | 2 | {row.mean:.4f} ± {row.std:.4f} |" in summary.table
    assert by_arm[("baseline", 0)] != by_arm[("baseline", 1)]  # the seed changes the proxy
    # two seeds can never separate two recipes at 5 % (smallest p = 1/6), and the verdict says so
    assert not summary.verdict.separated and "run more seeds" in summary.verdict.text
    out = Path(summary.out_dir)
    assert {p.name for p in out.iterdir()} == {"ablation.md", "ablation.json", "ablation.png"}
    logged = {a.path for a in client(base.tracking).list_artifacts(summary.parent_run_id, "ablation")}
    assert logged == {"ablation/ablation.md", "ablation/ablation.json", "ablation/ablation.png"}


def test_recipes_may_change_only_the_data():
    from flows.ablate import AblationConfig
    from flows.config import recipe_config

    base = load_config("tiny_cpu")
    with pytest.raises(ValueError, match=r"recipe 'bigger' overrides \['train'\]: a recipe varies the data only"):
        recipe_config(base, Recipe(name="bigger", overrides={"train.lr": 0.1}))
    with pytest.raises(ValueError, match="weights dataset 'wiki', which the mixture does not have"):
        recipe_config(base, Recipe(name="w", weights={"wiki": 0.5}))
    with pytest.raises(ValueError, match="recipe 'typo'"):
        recipe_config(base, Recipe(name="typo", overrides={"curate.minhsh": False}))
    mixed = base.model_copy(update={"mixture": base.mixture.model_validate(
        {"datasets": [{"name": "wiki", "paths": ["/data/wiki"], "weight": 1.0}]})})
    assert recipe_config(mixed, Recipe(name="w", weights={"wiki": 0.25})).mixture.datasets[0].weight == 0.25
    with pytest.raises(ValueError, match="unique names"):
        AblationConfig(recipes=[Recipe(name="a"), Recipe(name="a")])
    with pytest.raises(ValueError, match=r"recipe 'bigger' overrides \['train'\]"):  # the config, before any run
        AblationConfig(recipes=[Recipe(name="bigger", overrides={"train": {"lr": 0.1}})])


def test_verdict_is_an_exact_permutation_test():
    from tasks.ablate.results import RecipeRow, permutation_p, verdict

    def row(name, values):
        import statistics

        return RecipeRow(recipe=name, description="", values=values, mean=statistics.fmean(values),
                         std=statistics.stdev(values), means={}, docs=1, train_tokens=1, epochs=1.0)

    # every seed of the best below every seed of the runner-up: the one split in C(6, 3) = 20 that extreme
    assert permutation_p([1.0, 1.1, 1.2], [1.3, 1.4, 1.5], maximize=False) == pytest.approx(1 / 20)
    assert permutation_p([0.9, 0.8, 0.7], [0.6, 0.5, 0.4], maximize=True) == pytest.approx(1 / 20)
    separated = verdict([row("a", [1.0, 1.1, 1.2]), row("b", [1.3, 1.4, 1.5])], "val_bpb", 0.05, False)
    assert separated.separated and separated.lead == pytest.approx(0.3)
    overlapping = verdict([row("a", [1.0, 1.35, 1.2]), row("b", [1.3, 1.4, 1.25])], "val_bpb", 0.05, False)
    assert not overlapping.separated and overlapping.p_value > 0.05


def test_the_table_gives_the_gate_the_best_recipes_seed_noise():
    import shlex
    import statistics

    from tasks.ablate.results import RecipeRow, table_markdown, verdict

    values = [1.0, 1.04, 1.02, 1.07]
    rows = [RecipeRow(recipe="a", description="", values=values, mean=statistics.fmean(values),
                      std=statistics.stdev(values), means={}, docs=1, train_tokens=1, epochs=1.0)]
    table = table_markdown(rows, "val_bpb", verdict(rows, "val_bpb", 0.05, False))
    flags = shlex.split(table.split("is its tokens): ", 1)[1])
    overrides = flags[1::2]
    assert flags[::2] == ["--set", "--set"]
    registry = load_config("tiny_cpu", overrides=overrides).registry  # what `lmforge run --set …` would get
    assert registry.seed_noise == {"val_bpb": round(statistics.stdev(values), 4)} and registry.seed_noise_runs == 4
