"""CORE: a tiny bundle in nanochat's eval_bundle layout, written by the tests, scored on tiny models."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tasks.evaluate import core

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
    return [{"query": f"Question: which {rng.choice(WORDS)} is {rng.choice(WORDS)}?",
             "choices": [" ".join(rng.sample(WORDS, rng.randint(1, 3))) for _ in range(4)], "gold": rng.randrange(4)}
            for _ in range(n)]


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
