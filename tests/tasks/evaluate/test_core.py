"""CORE: a tiny bundle in nanochat's eval_bundle layout, written by the tests, scored on tiny models."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_fixtures import MemorisedLM, checkpoint_ref, tiny_gpt, tiny_tokenizer, write_checkpoint

from tasks.evaluate import core
from tasks.evaluate.evaluate import EvalConfig, evaluate_model, run_evaluate
from tasks.evaluate.items import load_items
from tasks.registry.register import metric_group

CORE_YAML = """icl_tasks:
- label: mc_task
  dataset_uri: world/mc.jsonl
  num_fewshot: [2]
  icl_task_type: multiple_choice
  continuation_delimiter: "\\nAnswer: "
- label: schema_task
  dataset_uri: language/schema.jsonl
  num_fewshot: [0]
  icl_task_type: schema
- label: lm_task
  dataset_uri: language/lm.jsonl
  num_fewshot: [1]
  icl_task_type: language_modeling
- label: absent_task
  dataset_uri: reading/absent.jsonl
  num_fewshot: [10]
  icl_task_type: language_modeling
"""
META_HEADER = "Eval Task,Task Category,Task Type,#shots,#datapoints,Random baseline,Centered Metric?,Description\n"
WORDS = "red green blue cat dog bird tree river stone light dark small big old new".split()


def mc_rows(n: int, rng: random.Random) -> list[dict]:
    """Four choices, none a prefix of another; in odd items two share their first word (a longer common prefix)."""
    rows = []
    for i in range(n):
        firsts = ["red", "red", "old", "big"] if i % 2 else rng.sample(WORDS, 4)
        choices = [f"{a} {b}" for a, b in zip(firsts, rng.sample(WORDS, 4))]
        rows.append({"query": f"Question: which {rng.choice(WORDS)} is {rng.choice(WORDS)}?", "choices": choices,
                     "gold": rng.randrange(4)})
    return rows


def schema_rows(n: int, rng: random.Random) -> list[dict]:
    return [{"context_options": [f"The {a} saw the {b} so the {c}" for c in (a, b)], "gold": rng.randrange(2),
             "continuation": f"went to the {rng.choice(WORDS)}."}
            for a, b in (rng.sample(WORDS, 2) for _ in range(n))]


def lm_rows(n: int, rng: random.Random) -> list[dict]:
    return [{"context": f"The {rng.choice(WORDS)} {rng.choice(WORDS)} is ", "continuation": rng.choice(WORDS)}
            for _ in range(n)]


def write_bundle(root: Path, n: int = 12, v1: dict | None = None, v2: dict | None = None) -> Path:
    rng = random.Random(0)
    data = {"world/mc.jsonl": mc_rows(n, rng), "language/schema.jsonl": schema_rows(n, rng),
            "language/lm.jsonl": lm_rows(n, rng)}
    for uri, rows in data.items():
        (root / "eval_data" / uri).parent.mkdir(parents=True, exist_ok=True)
        (root / "eval_data" / uri).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "core.yaml").write_text(CORE_YAML)
    for name, baselines in (("eval_meta_data.csv", v1 or {"mc_task": 25, "schema_task": 50, "lm_task": 0}),
                            ("eval_meta_data_v2.csv", v2 or {"mc_task": 20, "schema_task": 40, "lm_task": 10})):
        rows = "".join(f"{label},x,y,0,{n},{b},,\"d\"\n" for label, b in baselines.items())
        (root / name).write_text(META_HEADER + rows + "absent_task,x,y,10,5,0,,\"d\"\n")
    return root


def test_item_texts_follow_the_shuffle_and_name_file_lines(tmp_path):
    bundle = write_bundle(tmp_path)
    texts = core.core_item_texts(bundle, max_per_task=5)
    assert sorted(texts) == ["lm_task", "mc_task", "schema_task"]  # the absent task is not there
    lines = list(range(12))
    random.Random(1337).shuffle(lines)  # nanochat's subsampling: shuffle every line, then cut
    assert [i for i, _ in texts["mc_task"]] == [f"mc_task/{n}" for n in lines[:5]]
    mc = [json.loads(x) for x in (bundle / "eval_data/world/mc.jsonl").read_text().splitlines()]
    first = mc[lines[0]]
    assert texts["mc_task"][0][1] == first["query"] + "\nAnswer: " + first["choices"][first["gold"]]
    schema = json.loads((bundle / "eval_data/language/schema.jsonl").read_text().splitlines()[lines[1]])
    assert texts["schema_task"][1][1] == schema["context_options"][schema["gold"]] + " " + schema["continuation"]
    lm = json.loads((bundle / "eval_data/language/lm.jsonl").read_text().splitlines()[lines[2]])
    assert texts["lm_task"][2][1] == lm["context"].strip() + " " + lm["continuation"]
    assert len(core.core_item_texts(bundle, max_per_task=-1)["lm_task"]) == 12


def test_bundle_names_missing_tasks_and_rejects_bad_input(tmp_path):
    bundle = core.read_bundle(write_bundle(tmp_path))
    assert [t.label for t in bundle.tasks] == ["mc_task", "schema_task", "lm_task"]
    assert bundle.missing == ["absent_task"]
    assert bundle.tasks[0].num_fewshot == 2 and bundle.tasks[0].delimiter == "\nAnswer: "
    assert bundle.tasks[1].delimiter == " "  # nanochat's default
    with pytest.raises(FileNotFoundError):
        core.read_bundle(tmp_path / "nowhere")
    with open(tmp_path / "eval_data/language/lm.jsonl", "a") as f:
        f.write("\n")
    with pytest.raises(ValueError, match="lm.jsonl:13"):
        core.core_item_texts(tmp_path, -1)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def nanochat_prompts(task: core.CoreTask, items: list[dict], idx: int) -> list[str]:
    """The prompts nanochat's templates render for item `idx`, spelled out from core_eval.py's jinja templates."""
    rng = random.Random(1234 + idx)
    shots = [items[i] for i in rng.sample([i for i in range(len(items)) if i != idx], task.num_fewshot)]
    d, item = task.delimiter, items[idx]
    if task.task_type == "multiple_choice":
        head = "".join(ex["query"] + d + ex["choices"][ex["gold"]] + "\n\n" for ex in shots)
        return [head + item["query"] + d + choice for choice in item["choices"]]
    if task.task_type == "schema":
        head = "".join(ex["context_options"][ex["gold"]] + d + ex["continuation"] + "\n\n" for ex in shots)
        return [head + option + d + item["continuation"] for option in item["context_options"]]
    head = "".join(ex["context"].strip() + d + ex["continuation"] + "\n\n" for ex in shots)
    return [(head + item["context"].strip() + d).strip(), head + item["context"].strip() + d + item["continuation"]]


def kept_items(tmp_path: Path, label: str, n: int = 12, max_per_task: int = 8) -> tuple[core.CoreTask, list[dict]]:
    bundle = core.read_bundle(write_bundle(tmp_path, n))
    task = next(t for t in bundle.tasks if t.label == label)
    return task, [item for _, item in core.task_items(bundle, task, max_per_task)]


@pytest.mark.parametrize("label", ["mc_task", "schema_task", "lm_task"])
def test_a_model_that_memorised_nanochats_prompts_scores_exactly_the_items_it_knows(tmp_path, tok, label):
    """The model knows the gold answer of the even items in nanochat's exact prompt (few-shot examples included)
    and a wrong one of the odd items; any other prompt text, few-shot draw or scored span and it knows nothing."""
    task, items = kept_items(tmp_path, label)
    taught = []
    for idx, item in enumerate(items):
        prompts = nanochat_prompts(task, items, idx)
        if task.task_type == "language_modeling":
            taught += [prompts[1]] if idx % 2 == 0 else []
        else:
            gold = item["gold"]
            taught.append(prompts[gold if idx % 2 == 0 else (gold + 1) % len(prompts)])
    model = MemorisedLM([[tok.bos_id, *tok.encode(text)] for text in taught], tok.vocab_size, seq_len=4096)
    right = core.score_task(model, tok, task, items, max_len=4096, device="cpu", batch_size=3)
    assert right == [idx % 2 == 0 for idx in range(len(items))]


def reference_scores(model, seqs: list[tuple[list[int], int, int]], greedy: bool) -> list[float]:
    """One forward pass per sequence, no padding: nanochat's per-position losses, sliced to the scored span."""
    out = []
    for tokens, start, end in seqs:
        x = torch.tensor([tokens])
        with torch.no_grad():
            logits = model(x)[0][0]  # (T, V)
        losses = F.cross_entropy(logits[:-1], x[0, 1:], reduction="none")  # position p predicts token p + 1
        hits = logits[:-1].argmax(-1) == x[0, 1:]
        out.append(float(hits[start - 1 : end - 1].all()) if greedy else losses[start - 1 : end - 1].mean().item())
    return out


@pytest.mark.parametrize("label", ["mc_task", "schema_task", "lm_task"])
def test_batched_scoring_equals_one_pass_per_sequence_with_the_crop(tmp_path, tok, label):
    task, items = kept_items(tmp_path, label)
    max_len = 24  # shorter than the few-shot prompts: cropped from the left
    seqs, spans = [], []
    for idx, item in enumerate(items):
        prompts = core.render_prompts(task, item, core.fewshot_examples(items, idx, task.num_fewshot))
        assert prompts == nanochat_prompts(task, items, idx)
        full = core.scored_spans(task, prompts, tok, 10_000)
        cropped = core.scored_spans(task, prompts, tok, max_len)
        for (t0, s0, e0), (t1, s1, e1) in zip(full, cropped):
            assert len(t1) == min(len(t0), max_len) and t1[s1:e1] == t0[s0:e0]  # the judged tokens survive the crop
        spans += [len(t) for t, _, _ in full]
        seqs += cropped
    assert task.num_fewshot == 0 or max(spans) > max_len
    greedy = task.task_type == "language_modeling"
    model = tiny_gpt(tok.vocab_size, seq_len=max_len)
    if greedy:  # a random model gets no LM item right: one that memorised some of them does
        model = MemorisedLM([t for t, _, _ in seqs[::2]], tok.vocab_size, seq_len=max_len)
    batched = core.score_sequences(model, seqs, greedy, tok.bos_id, "cpu", batch_size=5)
    expected = reference_scores(model, seqs, greedy)
    assert batched == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert len(set(batched)) > 1
    if greedy:
        assert batched == [float(i % 2 == 0) for i in range(len(seqs))]


@pytest.mark.parametrize("label", ["mc_task", "schema_task", "lm_task"])
def test_the_judged_tokens_are_the_continuation(tmp_path, tok, label):
    """After the options' common prefix (multiple choice), their common suffix (schema), the prompt without the
    continuation (language modelling); no option here shares its first or last word with all the others."""
    task, items = kept_items(tmp_path, label)
    for idx, item in enumerate(items):
        prompts = core.render_prompts(task, item, core.fewshot_examples(items, idx, task.num_fewshot))
        judged = [tokens[start:end] for tokens, start, end in core.scored_spans(task, prompts, tok, 10_000)]
        if task.task_type == "multiple_choice":
            assert judged == [tok.encode(" " + choice) for choice in item["choices"]]
        else:
            assert judged == [tok.encode(" " + item["continuation"])] * len(judged)


def test_fewer_items_than_shots_uses_every_other_item(tmp_path):
    task, items = kept_items(tmp_path, "mc_task", max_per_task=2)
    assert task.num_fewshot == 2 and core.fewshot_examples(items, 0, 2) == [items[1]]


def test_centered_accuracy_core_n_and_items():
    tasks = [core.CoreTask(label, kind, f"{label}.jsonl", 0, " ")
             for label, kind in (("mc", "multiple_choice"), ("schema", "schema"), ("lm", "language_modeling"))]
    bundle = core.CoreBundle(Path("b"), tasks, ["squad"], {"mc": 25.0, "schema": 50.0, "lm": 0.0}, "v1")
    outcomes = {"mc": [("mc/0", True), ("mc/3", True), ("mc/5", True), ("mc/9", False)],
                "schema": [("schema/1", True), ("schema/2", False)],
                "lm": [("lm/0", False), ("lm/1", True), ("lm/2", False), ("lm/7", False)]}
    result = core.CoreResult(bundle, 4, outcomes, {"mc": 1.0, "schema": 1.0, "lm": 1.0})
    metrics = result.metrics()
    assert metrics["core/mc_acc"] == 0.75 and metrics["core/mc_centered"] == pytest.approx((0.75 - 0.25) / 0.75)
    assert metrics["core/schema_centered"] == 0.0 and metrics["core/lm_centered"] == 0.25
    assert metrics["core_3"] == pytest.approx((2 / 3 + 0 + 0.25) / 3)
    items = result.items()
    assert sorted(items) == ["core/lm_acc", "core/mc_acc", "core/schema_acc", "core_3"]
    assert items["core_3"].kind == "centered" and items["core_3"].baselines == {"mc": 0.25, "schema": 0.5, "lm": 0.0}
    assert items["core_3"].aggregate() == pytest.approx(metrics["core_3"])
    assert items["core/mc_acc"].ids == ["mc/0", "mc/3", "mc/5", "mc/9"] and items["core/mc_acc"].aggregate() == 0.75
    assert items["core_3"].subset({"mc/9", "schema/1", "lm/1"}).aggregate() == pytest.approx((-1 / 3 + 1 + 1) / 3)
    summary = result.summary()
    assert summary["missing"] == ["squad"] and summary["baseline"] == "v1" and summary["value"] == metrics["core_3"]


def test_evaluate_stage_reports_core_over_the_tasks_present_with_the_chosen_baselines(tmp_path, tok):
    bundle = write_bundle(tmp_path)
    model = tiny_gpt(tok.vocab_size, seq_len=48)
    cfg = EvalConfig(prompts=[], core_bundle=str(bundle), core_max_per_task=6)
    v1 = evaluate_model(model, tok, cfg, None)
    assert "core_3" in v1["metrics"] and not any(k.startswith("core_22") for k in v1["metrics"])
    assert v1["core"]["missing"] == ["absent_task"] and v1["core"]["baseline"] == "v1"
    assert v1["core"]["tasks"]["mc_task"]["items"] == 6
    accs = {label: v1["metrics"][f"core/{label}_acc"] for label in ("mc_task", "schema_task", "lm_task")}
    assert v1["metrics"]["core/mc_task_centered"] == pytest.approx((accs["mc_task"] - 0.25) / 0.75)
    assert v1["items"]["core_3"].aggregate() == pytest.approx(v1["metrics"]["core_3"])
    assert len(v1["items"]["core_3"].ids) == 18 and v1["items"]["core_3"].ids[0].startswith("mc_task/")
    v2 = evaluate_model(model, tok, cfg.model_copy(update={"core_baseline": "v2"}), None)
    assert v2["core"]["baseline"] == "v2"
    assert {k: v for k, v in v2["metrics"].items() if k.endswith("_acc")} == {
        k: v for k, v in v1["metrics"].items() if k.endswith("_acc")}  # same outcomes, other centering
    assert v2["metrics"]["core/lm_task_centered"] == pytest.approx((accs["lm_task"] - 0.10) / 0.90)
    fewer = evaluate_model(model, tok, cfg.model_copy(update={"core_max_per_task": 5}), None)
    assert len({v1["eval_sets"]["core"], v2["eval_sets"]["core"], fewer["eval_sets"]["core"]}) == 3
    assert "core" not in evaluate_model(model, tok, EvalConfig(prompts=[]), None)["eval_sets"]  # off by default


def test_the_stage_writes_cores_items_and_names_the_missing_tasks(tmp_path, tok):
    from tasks.core.artifacts import TokenSet
    from tasks.core.tokens import write_bin

    model = tiny_gpt(tok.vocab_size, seq_len=48)
    ckpt = checkpoint_ref(write_checkpoint(tmp_path / "train", model, tok), model)
    write_bin(tmp_path / "val.bin", [tok.bos_id, *tok.encode("Debian is a free operating system.")], tok.vocab_size)
    tokens = TokenSet(path=str(tmp_path), tokenizer_file="", vocab_size=tok.vocab_size, train_files=[],
                      val_files=["val.bin"], n_train_tokens=0, n_val_tokens=0, val_bytes=34)
    (tmp_path / "eval").mkdir()
    cfg = EvalConfig(prompts=[], core_bundle=str(write_bundle(tmp_path / "bundle")), core_max_per_task=4)
    report = run_evaluate(cfg, ckpt, tokens, tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["core"]["missing"] == ["absent_task"] and saved["core"]["metric"] == "core_3"
    assert saved["eval_sets"]["core"] and "items" not in saved
    items = load_items(tmp_path / "eval")
    assert items["core_3"].aggregate() == pytest.approx(report.metrics["core_3"])
    assert len(items["core/schema_task_acc"].ids) == 4
    assert "core_3 = " in (tmp_path / "eval" / "report.md").read_text() and "missing: absent_task" in (
        tmp_path / "eval" / "report.md").read_text()
    from tasks.registry.model_card import core_lines

    card = core_lines(report)[0]
    assert "`core_3`" in card and "v1 random baselines" in card and "absent_task" in card
    assert f"{report.metrics['core_3']:.4f}" in card


def test_core_metrics_belong_to_the_core_eval_set():
    assert [metric_group(m) for m in ("core_20", "core/arc_easy_acc", "core/hellaswag_zeroshot_centered")] == [
        "core"] * 3
    with pytest.raises(ValueError):
        EvalConfig(core_max_per_task=0)


def test_core_ranks_an_ablation_and_its_per_task_breakdown_stays_out_of_the_table():
    from tasks.ablate.results import RecipeRow, extra_metrics

    means = {"val_bpb": 2.0, "core_20": 0.1, "core/copa_acc": 0.6, "core/copa_centered": 0.2, "arc_acc": 0.3}
    row = RecipeRow(recipe="a", description="", values=[0.1], mean=0.1, std=0.0, means=means, docs=1,
                    train_tokens=1, epochs=1.0)
    assert extra_metrics([row], "val_bpb") == ["arc_acc", "core_20"]
    assert extra_metrics([row], "core_20") == ["arc_acc", "val_bpb"]
