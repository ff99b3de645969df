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


def test_a_model_module_importing_a_stage_breaks_the_build(tmp_path):
    """The contracts catch what they are meant to: `models/` reaching into `tasks/` fails with the rule's name."""
    copy = tmp_path / "repo"
    for name in ("flows", "infra", "tasks", "models"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    with open(copy / "models" / "inference" / "generate.py", "a") as f:
        f.write("\n\ndef _leak():\n    from tasks.core.artifacts import lmforge_home\n\n    return lmforge_home()\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "Imports point down: flows -> infra -> tasks -> models BROKEN" in result.stdout
    assert "models.inference.generate -> tasks.core.artifacts" in result.stdout
