"""A stage's cache key covers the code it runs and nothing else: in a copy of the checkout, an edit in the chat server
changes no stage's key, an edit in curation changes curate's (and the quality stage's, same package) only, a model
edit the stages that load models only, and an edit in `tasks.core` every stage's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel

from tasks.collect.config import CrawlConfig
from tasks.core import stage_code
from tasks.core.artifacts import DocSet, config_hash
from tasks.curate.config import CurateConfig
from tasks.curate.quality_stage import QualityTrainConfig
from tasks.evaluate.config import EvalConfig
from tasks.finetune.classify import ClassifyConfig
from tasks.finetune.gen_task import GenTaskConfig
from tasks.finetune.sft import SFTConfig
from tasks.finetune.sft_data import SFTDataConfig
from tasks.pretrained.importer import ImportConfig
from tasks.shard.shard import ShardConfig
from tasks.tokenize.tokenize import TokenizeConfig
from tasks.train.train import TrainConfig

STAGES: dict[str, type[BaseModel]] = {
    "crawl": CrawlConfig, "curate": CurateConfig, "quality": QualityTrainConfig, "shard": ShardConfig,
    "tokenize": TokenizeConfig, "train": TrainConfig, "evaluate": EvalConfig, "import": ImportConfig,
    "sft-data": SFTDataConfig, "sft": SFTConfig, "classify": ClassifyConfig, "gen-task": GenTaskConfig,
}
MODEL_STAGES = {"train", "evaluate", "import", "sft-data", "sft", "classify", "gen-task"}


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of `tasks/` and `models/` that stage keys are computed from."""
    for package in stage_code.PROJECT_PACKAGES:
        shutil.copytree(stage_code.PROJECT_ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stage_code, "PROJECT_ROOT", tmp_path)
    return tmp_path


def keys() -> dict[str, str]:
    return {stage: config_hash(stage, cfg.model_construct()) for stage, cfg in STAGES.items()}


def changed_by(checkout: Path, relative: str) -> set[str]:
    """The stages whose key changes when the docstring of `relative` is edited."""
    before = keys()
    path = checkout / relative
    path.write_text(path.read_text().replace('"""', '"""Edited. ', 1))
    after = keys()
    return {stage for stage in STAGES if before[stage] != after[stage]}


def test_a_serve_edit_reruns_no_stage(checkout: Path):
    assert changed_by(checkout, "tasks/serve/serve.py") == set()


def test_a_curate_edit_reruns_curate_and_what_follows_through_its_manifest(checkout: Path):
    assert changed_by(checkout, "tasks/curate/filters.py") == {"curate", "quality"}
    # shard and the stages after it rerun because curate's new manifest (another hash) is their input
    old, new = (DocSet(path="/curate", manifest_sha256=c * 64, files=[], n_docs=0) for c in "ab")
    assert config_hash("shard", ShardConfig(), old) != config_hash("shard", ShardConfig(), new)


def test_a_model_edit_reruns_only_the_stages_that_load_models(checkout: Path):
    assert changed_by(checkout, "models/gpt.py") == MODEL_STAGES
    assert changed_by(checkout, "models/rnn.py") == MODEL_STAGES  # named by a string, for importlib


def test_a_core_edit_reruns_every_stage(checkout: Path):
    assert changed_by(checkout, "tasks/core/schema.py") == set(STAGES)


def test_the_import_graph_follows_lazy_relative_and_string_imports(tmp_path: Path):
    (tmp_path / "tasks" / "toy").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    for name in ("tasks/__init__.py", "tasks/toy/__init__.py", "models/__init__.py", "models/lazy.py",
                 "models/named.py", "models/sibling.py", "models/unused.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "tasks" / "toy" / "run.py").write_text(
        "def run():\n    from models import lazy\n    return 'models.named:Thing'\n")
    (tmp_path / "models" / "lazy.py").write_text("from .sibling import x\n")
    found = set(stage_code.stage_modules("tasks.toy", tmp_path))
    assert {"tasks", "tasks.toy", "tasks.toy.run", "models", "models.lazy", "models.named", "models.sibling"} <= found
    assert "models.unused" not in found
