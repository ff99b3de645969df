"""Contamination check and decontamination on a crawl salted with 20 HellaSwag items and 5 ARC questions: the real
curate → shard → tokenize → train → evaluate → register chain on a tiny model, the check against
lm-evaluation-harness's own 13-gram code, the clean-subset scores, the registry's max_contamination refusal, the
lineage through continued pretraining, and curation's decontamination step."""

from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest
from contamination_data import SALTED_ARC, SALTED_HELLASWAG, SHORT_ARC, salted_crawl
from curate_data import doc_row, english, write_docset
from token_fixtures import tiny_train_config

from tasks.core.artifacts import finish_stage
from tasks.core.benchmarks import item_texts
from tasks.core.ngrams import words
from tasks.core.tracking import TrackingConfig, client, open_run
from tasks.curate.config import CurateConfig
from tasks.curate.curate import run_curate
from tasks.evaluate.contamination import check, training_data
from tasks.evaluate.evaluate import EvalConfig, run_evaluate
from tasks.evaluate.items import load_items
from tasks.registry.register import RegisterConfig, run_register
from tasks.shard.shard import ShardConfig, run_shard
from tasks.tokenize.tokenize import TokenizeConfig, is_val, run_tokenize
from tasks.train.train import run_train

# 3 of the 40 pages go to val, all of them ordinary ones: every salted page is in the train split
SPLIT = TokenizeConfig(vocab_size=400, val_fraction=0.1, split_seed="s2", workers=1, min_bytes_per_token=0.0)
FAST_CURATE = dict(tasks=1, workers=1, minhash=False, exact_dedup=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("contamination")
    docs, salted, hellaswag, arc = salted_crawl(root)
    curated = run_curate(CurateConfig(**FAST_CURATE), docs, root / "curate")
    shards = run_shard(ShardConfig(), curated, root / "shard")
    tokens = run_tokenize(SPLIT, shards, root / "tokens")
    ckpt = run_train(tiny_train_config(max_steps=2, checkpoint_every=0, eval_every=0), tokens, root / "train")
    cfg = EvalConfig(hellaswag_file=str(hellaswag), arc_file=str(arc), max_new_tokens=2, max_val_tokens=2000)
    (root / "evaluate").mkdir()
    report = run_evaluate(cfg, ckpt, tokens, root / "evaluate")
    return {"root": root, "docs": docs, "salted": salted, "hellaswag": hellaswag, "arc": arc, "shards": shards,
            "tokens": tokens, "ckpt": ckpt, "report": report, "cfg": cfg}


def lm_eval_contaminated(texts: dict[str, list[str]], train: list[str]) -> set[str]:
    """The reference: lm-evaluation-harness's Janitor normalisation and word_ngrams, applied by hand."""
    from lm_eval.decontamination.janitor import Janitor, word_ngrams

    janitor = Janitor()
    seen = {g for doc in train for g in word_ngrams(janitor.normalize_string(doc), 13)}
    return {i for i, item in texts.items() if any(g in seen for t in item for g in
                                                  word_ngrams(janitor.normalize_string(t), 13))}


@pytest.mark.slow
def test_the_check_finds_exactly_the_salted_items_in_the_train_split(trained):
    rows = [r for f in trained["shards"].files for r in pq.read_table(trained["shards"].dir / f).to_pylist()]
    train_pages = [r for r in rows if not is_val(r["id"], SPLIT)]
    assert len(rows) == 40 and len(train_pages) == 37  # curation kept every page; val holds 3 ordinary ones
    assert set(trained["salted"]) <= {r["url"] for r in train_pages}

    found = json.loads((trained["report"].dir / "report.json").read_text())["contamination"]
    hs, arc = found["sets"]["hellaswag"], found["sets"]["arc"]
    assert hs["contaminated_ids"] == [str(i) for i in SALTED_HELLASWAG] and hs["items"] == 40
    assert arc["contaminated_ids"] == [str(i) for i in SALTED_ARC] and arc["items"] == 10
    assert arc["short"] == len(SHORT_ARC) and hs["short"] == 0
    assert found["sets"]["prompts"] == {**found["sets"]["prompts"], "items": 4, "short": 4, "contaminated": 0}
    assert found["training_docs"] == 37 and found["complete"]
    assert found["training_data"]["token_sets"] == [trained["tokens"].path]
    # the evidence names a 13-gram of the item and the train document it was found in
    evidence = hs["evidence"]["0"]
    assert evidence["ngram"] in " ".join(words(item_texts("hellaswag", trained["hellaswag"])["0"][0]))
    assert len(evidence["ngram"].split()) == 13 and evidence["doc"].startswith(f"{trained['tokens'].dir.name}/train_")
    # lm-eval's own code on the train pages' text agrees, item for item
    train = [r["text"] for r in train_pages]
    assert lm_eval_contaminated(item_texts("hellaswag", trained["hellaswag"]), train) == set(hs["contaminated_ids"])
    assert lm_eval_contaminated(item_texts("arc", trained["arc"]), train) == set(arc["contaminated_ids"])
    metrics = trained["report"].metrics
    assert metrics["hellaswag_contaminated"] == 0.5 and metrics["arc_contaminated"] == 0.5


@pytest.mark.slow
def test_clean_subset_scores_leave_the_contaminated_items_out(trained):
    report = trained["report"]
    items = load_items(report.dir)
    section = json.loads((report.dir / "report.json").read_text())["contamination"]["sets"]
    for name, salted, n in (("hellaswag", SALTED_HELLASWAG, 40), ("arc", SALTED_ARC, 10)):
        for metric in (f"{name}_acc", f"{name}_acc_norm"):
            hits = dict(zip(items[metric].ids, items[metric].values))
            assert len(hits) == n and sum(hits.values()) / n == pytest.approx(report.metrics[metric])
            clean = [hits[i] for i in hits if int(i) not in salted]
            assert len(clean) == n - len(salted)
            assert report.metrics[f"{metric}_clean"] == pytest.approx(sum(clean) / len(clean))
            assert section[name]["scores"][metric] == {"full": pytest.approx(report.metrics[metric]),
                                                       "clean": pytest.approx(sum(clean) / len(clean)),
                                                       "clean_items": n - len(salted)}


@pytest.mark.slow
def test_the_gate_refuses_a_contaminated_model_and_the_card_shows_why(trained, tmp_path):
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client(tracking).create_experiment(tracking.experiment, artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow_client = client(tracking)

    def register(name: str, limit: float | None):
        run_id = open_run(tracking, f"run-{name}", {}, {})
        cfg = RegisterConfig(model_name=name, max_contamination=limit, guard_metrics=["hellaswag_acc_norm"])
        ref = run_register(cfg, tracking, run_id, trained["ckpt"], trained["report"])
        return mlflow_client.get_model_version(name, ref.version)

    refused = register("strict", 0.0)
    assert refused.tags["lmforge.gate.decision"] == "refused"  # a first version, refused all the same
    assert "hellaswag 50.0%" in refused.tags["lmforge.gate.reason"]
    assert "max_contamination 0.0" in refused.tags["lmforge.gate.reason"]
    assert "| hellaswag | 40 | 0 | 20 (50.0%) | hellaswag_acc_norm |" in refused.description
    assert "| arc | 10 | 2 | 5 (50.0%) |" in refused.description
    assert register("tolerant", 0.5).tags["lmforge.gate.decision"] == "promoted"  # at the limit is within it
    assert register("unchecked", None).tags["lmforge.gate.decision"] == "promoted"


@pytest.mark.slow
def test_continued_pretraining_inherits_its_base_data(trained):
    """A model continued on new pages is checked against both crawls: an item salted only in the new one is found."""
    root, tokens = trained["root"], trained["tokens"]
    item = item_texts("hellaswag", trained["hellaswag"])["1"][2]  # unsalted so far; quoted with a wrong ending
    rows = [doc_row(english(400 + s), f"http://new.test/{s}.html") for s in range(5)]
    rows.append(doc_row(f"{english(500, 6)}\n\n{item}\n\n{english(501, 6)}", "http://new.test/quiz.html"))
    curated = run_curate(CurateConfig(**FAST_CURATE), write_docset(rows, root / "crawl2"), root / "curate2")
    split = SPLIT.model_copy(update={"tokenizer_file": str(tokens.dir / tokens.tokenizer_file), "val_fraction": 0.0})
    new_tokens = run_tokenize(split, run_shard(ShardConfig(), curated, root / "shard2"), root / "tokens2")
    base = trained["ckpt"].dir / trained["ckpt"].checkpoint
    ckpt = run_train(tiny_train_config(max_steps=1, checkpoint_every=0, eval_every=0, init_from=str(base)),
                     new_tokens, root / "train2")
    lineage = training_data(ckpt.dir / ckpt.checkpoint)
    assert lineage.token_sets == [new_tokens.path, tokens.path] and lineage.complete
    found, _ = check(trained["cfg"], ckpt.dir / ckpt.checkpoint, {})
    assert found["sets"]["hellaswag"]["contaminated_ids"] == sorted(
        [str(i) for i in [*SALTED_HELLASWAG, 1]], key=int)
    assert found["sets"]["hellaswag"]["evidence"]["1"]["doc"].startswith(f"{new_tokens.dir.name}/train_")
    assert found["training_docs"] == 37 + 6


@pytest.mark.slow
def test_decontamination_removes_exactly_the_salted_pages(trained, tmp_path):
    files = [f"hellaswag:{trained['hellaswag']}", f"arc:{trained['arc']}"]
    ref = run_curate(CurateConfig(**FAST_CURATE, decontaminate=files), trained["docs"], tmp_path / "curate")
    removed = {}
    for path in (ref.dir / "removed" / "decontaminate").glob("*.jsonl.gz"):
        with gzip.open(path, "rt") as f:
            for line in f:
                meta = json.loads(line)["metadata"]
                removed[meta["url"]] = f"{meta['contaminated_benchmark']}/{meta['contaminated_item']}"
    assert removed == trained["salted"]  # each salted page, blamed on the very item it quotes
    kept = {r["url"] for f in ref.files for r in pq.read_table(ref.dir / f, columns=["url"]).to_pylist()}
    assert kept == {f"http://site.test/plain-{s}.html" for s in range(15)}
    step = ref.manifest()["stats"]["steps"]["decontaminate"]
    assert step["dropped"] == {"total": 25.0, "contaminated_hellaswag": 20.0, "contaminated_arc": 5.0}
    assert (step["docs_in"], step["docs_out"]) == (40.0, 15.0)


def test_core_items_are_checked_by_task_and_line(tmp_path):
    """A CORE bundle (nanochat's layout): the items a page quotes are found under their `<task>/<line>` ids."""
    rows = [{"query": f"Case {i}: the {adj} pilot of case {i} steers the ferry past rocks; in case {i} what should "
                      "the pilot do first?", "choices": ["slow down", "sound the horn"], "gold": i % 2}
            for i, adj in enumerate("calm tired young careful brave old".split())]
    (tmp_path / "eval_data" / "world").mkdir(parents=True)
    (tmp_path / "eval_data" / "world" / "pilots.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "core.yaml").write_text("icl_tasks:\n- label: pilots\n  dataset_uri: world/pilots.jsonl\n"
                                        "  num_fewshot: [0]\n  icl_task_type: multiple_choice\n")
    from tasks.core.ngrams import NGramIndex
    from tasks.evaluate.contamination import core_items

    items = core_items(tmp_path, max_per_task=-1)
    assert sorted(items) == [f"pilots/{i}" for i in range(6)]
    page = f"{english(7)}\n\n{rows[4]['query']} {rows[4]['choices'][0]}\n\n{english(8)}"
    found = NGramIndex({"core": items}).overlaps([("page", page), ("plain", english(9))])
    assert list(found) == [("core", "pilots/4")] and found[("core", "pilots/4")].doc == "page"


@pytest.mark.slow
def test_an_sft_model_is_checked_against_its_conversations_and_its_base_data(trained, tmp_path):
    from tasks.finetune.sft import SFTConfig, run_sft
    from tasks.finetune.sft_data import TRAIN, VAL, ConversationSet

    quoted = item_texts("arc", trained["arc"])["6"][0]  # an ARC question no page quotes
    rows = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            [{"role": "user", "content": "A quiz for you."}, {"role": "assistant", "content": quoted}]]
    folder = tmp_path / "sft-data"
    folder.mkdir()
    (folder / TRAIN).write_text("".join(json.dumps({"messages": m, "source": "test"}) + "\n" for m in rows))
    (folder / VAL).write_text("")
    data = finish_stage(folder, ConversationSet(path=str(folder), files=[TRAIN, VAL], n_train=2, n_val=0))
    cfg = SFTConfig(max_steps=1, batch_size=1, device="cpu", threads=1)
    sft = run_sft(cfg, trained["ckpt"], data, tmp_path / "sft")
    lineage = training_data(sft.dir / sft.checkpoint)
    assert lineage.token_sets == [trained["tokens"].path]
    assert lineage.conversations == [str(tmp_path / "sft-data" / TRAIN)]
    found, _ = check(trained["cfg"], sft.dir / sft.checkpoint, {})
    assert found["sets"]["arc"]["contaminated_ids"] == [*map(str, SALTED_ARC), "6"]
    assert found["sets"]["arc"]["evidence"]["6"]["doc"] == f"{tmp_path / 'sft-data' / TRAIN}:2"
