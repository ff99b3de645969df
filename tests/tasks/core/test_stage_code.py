"""A stage's cache key covers the code its entry function runs and nothing else, and no prose: in a copy of the
checkout, a docstring or comment edit in every module changes no key, a code edit of `tasks/core/pii_phone.py` changes
curate's key and not the crawl's, an edit of `tasks/finetune/dpo.py` no SFT key, and an edit of a module a stage
imports (lazily, or named by a string for importlib) changes that stage's key."""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.collect.crawl import run_crawl
from tasks.collect.mixture import run_mix
from tasks.core import stage_code
from tasks.core.artifacts import DocSet, config_hash, finish_stage, stage_dir
from tasks.curate.curate import run_curate
from tasks.curate.quality_stage import run_quality
from tasks.evaluate.evaluate import run_evaluate
from tasks.finetune.classify import run_classify
from tasks.finetune.dpo import run_dpo
from tasks.finetune.gen_task import run_gen_task
from tasks.finetune.pref_data import run_preference_data
from tasks.finetune.pref_eval import run_preference_eval
from tasks.finetune.sft import run_sft
from tasks.finetune.sft_data import run_sft_data
from tasks.pretrained.importer import run_import
from tasks.shard.shard import ShardConfig, run_shard
from tasks.tokenize.tokenize import run_tokenize
from tasks.train.train import run_train

STAGES: dict[str, Callable[..., object]] = {
    "crawl": run_crawl, "mix": run_mix, "curate": run_curate, "quality": run_quality, "shard": run_shard,
    "tokenize": run_tokenize, "train": run_train, "evaluate": run_evaluate, "import": run_import,
    "sft-data": run_sft_data, "sft": run_sft, "dpo": run_dpo, "preference-data": run_preference_data,
    "preference-eval": run_preference_eval, "classify": run_classify, "gen-task": run_gen_task,
}
SFT_STAGES = {"sft-data", "sft", "gen-task"}  # gen-task fine-tunes through run_sft


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project packages that stage keys are computed from; the real checkout is never edited."""
    for package in stage_code.PROJECT_PACKAGES:
        shutil.copytree(stage_code.PROJECT_ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stage_code, "PROJECT_ROOT", tmp_path)
    return tmp_path


def keys() -> dict[str, str]:
    return {stage: config_hash(stage, ShardConfig(), entry=entry) for stage, entry in STAGES.items()}


def edit_code(checkout: Path, relative: str) -> set[str]:
    """The stages whose key changes when a statement is added to `relative`."""
    before = keys()
    path = checkout / relative
    path.write_text(path.read_text() + "\n_EDITED_BY_TEST = 1\n")
    after = keys()
    return {stage for stage in STAGES if before[stage] != after[stage]}


def edit_prose(path: Path) -> None:
    """Reword every docstring in `path`, add comments and blank lines, reflow nothing the parser keeps."""
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    docstrings = []
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value,
                                                                                                    str):
                docstrings.append(first.value)
    for doc in sorted(docstrings, key=lambda d: (d.lineno, d.col_offset), reverse=True):
        line = lines[doc.lineno - 1]
        quote = 3 if line[doc.col_offset:doc.col_offset + 3] in ('"""', "'''") else 1
        at = doc.col_offset + quote
        lines[doc.lineno - 1] = line[:at] + "Reworded. " + line[at:]
    path.write_text("".join(lines) + "\n\n# a comment added by the test\n")


def test_a_docstring_or_comment_edit_anywhere_reruns_nothing(checkout: Path):
    before = keys()
    edited = 0
    for path in sorted(checkout.rglob("*.py")):
        original = path.read_text()
        edit_prose(path)
        edited += path.read_text() != original
    assert edited > 100  # every module of the copy, not a handful
    assert keys() == before


def test_a_pii_phone_edit_reruns_curate_and_what_follows_not_the_crawl(checkout: Path):
    changed = edit_code(checkout, "tasks/core/pii_phone.py")
    assert "curate" in changed
    assert not changed & {"crawl", "mix", "quality", "shard", "tokenize", "train"}
    # shard and the stages after it rerun because curate's new manifest (another hash) is their input
    old, new = (DocSet(path="/curate", manifest_sha256=c * 64, files=[], n_docs=0) for c in "ab")
    assert (config_hash("shard", ShardConfig(), old, entry=run_shard)
            != config_hash("shard", ShardConfig(), new, entry=run_shard))


def test_a_dpo_edit_reruns_no_sft(checkout: Path):
    changed = edit_code(checkout, "tasks/finetune/dpo.py")
    assert changed == {"dpo", "preference-eval"}  # preference-eval scores DPO's model with DPO's own loss
    assert not changed & SFT_STAGES


def test_a_module_a_stage_imports_changes_its_key(checkout: Path):
    assert "curate" in edit_code(checkout, "tasks/curate/filters.py")  # imported inside run_curate's function body
    assert "crawl" not in edit_code(checkout, "tasks/collect/mixture.py")  # the sibling the crawl never imports
    assert edit_code(checkout, "tasks/collect/mixture.py") == {"mix"}
    assert "train" in edit_code(checkout, "models/architectures/rnn.py")  # named by a string, for importlib
    assert "train" in edit_code(checkout, "tasks/train/state.py")
    assert edit_code(checkout, "tasks/serve/serve.py") == set()  # the server is no stage


def test_the_import_graph_follows_lazy_relative_and_string_imports_from_the_entry_module(tmp_path: Path):
    (tmp_path / "tasks" / "toy").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    for name in ("tasks/__init__.py", "tasks/toy/__init__.py", "tasks/toy/other.py", "models/__init__.py",
                 "models/lazy.py", "models/named.py", "models/sibling.py", "models/unused.py", "models/prose.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "tasks" / "toy" / "run.py").write_text(
        '"""models.prose is named in prose only."""\n'
        "def run():\n    from models import lazy\n    return 'models.named:Thing'\n")
    (tmp_path / "models" / "lazy.py").write_text("from .sibling import x\n")
    found = set(stage_code.stage_modules("tasks.toy.run", tmp_path))
    assert found == {"tasks", "tasks.toy", "tasks.toy.run", "models", "models.lazy", "models.named", "models.sibling"}
    assert stage_code.stage_modules("tests.somewhere", tmp_path) == {}  # an entry outside the project: no code


def test_the_manifest_records_the_code_version_of_the_stage_entry(lmforge_home: Path):
    out = stage_dir("shard", ShardConfig(), entry=run_shard)
    ref = finish_stage(out, DocSet(path=str(out), files=[], n_docs=0), config=ShardConfig(), entry=run_shard)
    assert ref.manifest()["code_version"] == stage_code.code_version(run_shard)
    assert stage_code.code_version(run_shard) != stage_code.code_version(run_crawl)


def test_an_entry_run_as_a_script_is_keyed_by_its_module_name(monkeypatch: pytest.MonkeyPatch):
    """`python -m tasks.train.train` defines run_train in `__main__`: its key must be the imported module's."""
    import types

    script = types.ModuleType("__main__")
    script.__spec__ = types.SimpleNamespace(name="tasks.train.train")
    monkeypatch.setitem(sys.modules, "__main__", script)

    def run_script() -> None:
        pass

    run_script.__module__ = "__main__"
    assert stage_code.entry_module(run_script) == "tasks.train.train"
    assert stage_code.code_version(run_script) == stage_code.code_version(run_train)
