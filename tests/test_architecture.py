"""The layering of the code base, as import-linter contracts in pyproject.toml: imports point down (flows → infra →
tasks → models), stages import only earlier stages and `tasks.core`, other stages use a stage's entry point, and
no package has an import cycle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the packages under `root` (first on the path, ahead of the installed checkout)."""
    binary = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run([binary, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300, env=env)


def test_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def lint_with_import(tmp_path: Path, module: str, imported: str) -> subprocess.CompletedProcess:
    """import-linter over a copy of the checkout in which `module` (a file path) also imports `imported`."""
    copy = tmp_path / "repo"
    for name in ("flows", "infra", "tasks", "models"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    with open(copy / module, "a") as f:
        f.write(f"\n\ndef _leak():\n    {imported}\n")
    return lint_imports(copy)


def test_a_model_module_importing_a_stage_breaks_the_build(tmp_path):
    """The contracts catch what they are meant to: `models/` reaching into `tasks/` fails with the rule's name."""
    result = lint_with_import(tmp_path, "models/inference/generate.py", "from tasks.core.artifacts import lmforge_home")
    assert result.returncode != 0
    assert "Imports point down: flows -> infra -> tasks -> models BROKEN" in result.stdout
    assert "models.inference.generate -> tasks.core.artifacts" in result.stdout


def test_decoding_importing_an_architecture_breaks_the_models_layers(tmp_path):
    """Inside `models/`, imports point down too: the decode loop below the architectures that declare their decoder
    (the other way round is the import cycle the subpackages' layering rules out)."""
    result = lint_with_import(tmp_path, "models/decoding/decoders.py", "from models.architectures.gpt import GPT")
    assert result.returncode != 0
    assert "models.decoding.decoders -> models.architectures.gpt" in result.stdout
    assert "Imports point down inside models/ (its subpackages by job) BROKEN" in result.stdout
