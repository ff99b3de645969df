from pathlib import Path

import pytest
from pydantic import BaseModel

from tasks.core.artifacts import DocSet, finish_stage, load_done, stage_dir


class ToyConfig(BaseModel):
    size: int = 1


def run_toy() -> None:
    """The toy stage's entry: defined outside the project packages, so its key covers no code."""


def test_stage_dir_is_deterministic_and_keyed_by_config_and_inputs(lmforge_home: Path):
    first = stage_dir("toy", ToyConfig(size=1), entry=run_toy)
    assert first == stage_dir("toy", ToyConfig(size=1), entry=run_toy)
    assert first.parent == lmforge_home / "runs" / "toy"
    assert first != stage_dir("toy", ToyConfig(size=2), entry=run_toy)
    upstream_a = DocSet(path="/x", manifest_sha256="a" * 64, files=[], n_docs=0)
    upstream_b = DocSet(path="/x", manifest_sha256="b" * 64, files=[], n_docs=0)
    assert (stage_dir("toy", ToyConfig(), upstream_a, entry=run_toy)
            != stage_dir("toy", ToyConfig(), upstream_b, entry=run_toy))


def test_stage_is_done_only_once_manifest_is_written(lmforge_home: Path):
    out = stage_dir("toy", ToyConfig(), entry=run_toy)
    assert load_done(out, DocSet) is None
    (out / "docs.parquet").write_bytes(b"rows")
    ref = finish_stage(out, DocSet(path=str(out), files=["docs.parquet"], n_docs=3), config=ToyConfig(), stats={"kept": 3})
    reloaded = load_done(out, DocSet)
    assert reloaded == ref
    assert reloaded.n_docs == 3 and len(reloaded.manifest_sha256) == 64
    manifest = reloaded.manifest()
    assert manifest["stats"] == {"kept": 3}
    assert manifest["files"][0]["bytes"] == 4


def test_missing_output_file_fails_the_stage(lmforge_home: Path):
    out = stage_dir("toy", ToyConfig(size=9), entry=run_toy)
    with pytest.raises(FileNotFoundError):
        finish_stage(out, DocSet(path=str(out), files=["never-written.parquet"], n_docs=1))
    assert load_done(out, DocSet) is None
