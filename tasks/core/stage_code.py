"""The source code a stage runs, hashed into its cache key (`tasks.core.artifacts.config_hash`).

A stage's code is its own package (the one its config class is defined in: one typed config per stage, in the
stage's package), `tasks.core`, and every project module those import, found by walking the import graph with `ast`
from the source files themselves, so nothing is imported and no list is kept by hand. Imports inside functions count
(heavy dependencies load lazily), and so does a string naming a project module, the target of `importlib`
(`models.gpt.ARCHS` names `"models.rnn:RNNLM"`). Importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` too,
so those are part of the code. Only `tasks` and `models` are followed: `flows/` composes stages and runs none of them.

So a docstring edit in `tasks/serve/` reruns no pipeline stage, and an edit in `tasks/curate/` reruns curate (and the
quality stage, in the same package); the stages after it rerun because their input's manifest changed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: tasks/core/ is two levels down
PROJECT_PACKAGES = ("tasks", "models")
SHARED_PACKAGE = "tasks.core"
_PREFIXES = tuple(f"{package}." for package in PROJECT_PACKAGES)


def stage_package(config_type: type) -> str | None:
    """`tasks.<stage>` for a config class defined in a stage's package; None for one defined elsewhere (a test's)."""
    parts = config_type.__module__.split(".")
    return ".".join(parts[:2]) if parts[0] == "tasks" and len(parts) > 1 else None


def module_file(name: str, root: Path) -> Path | None:
    """The source file of project module `name` under `root`, or None when `name` is no project module."""
    if not name or name.split(".")[0] not in PROJECT_PACKAGES or not all(p.isidentifier() for p in name.split(".")):
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _importing(name: str) -> Iterator[str]:
    """`a.b.c` and the packages importing it runs: `a`, `a.b`."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def imported_names(source: Path, module: str) -> tuple[str, ...]:
    """Every module name `source` (module `module`) may import: import statements anywhere, `from x import y` as
    both `x` and `x.y` (y may be a submodule), and string constants of the form `pkg.mod` or `pkg.mod:attr`."""
    return _imported_names(source.read_bytes(), module, source.name == "__init__.py")


@functools.lru_cache(maxsize=1024)  # keyed by the source bytes: parsing is most of the cost, and exact when edited
def _imported_names(code: bytes, module: str, is_package: bool) -> tuple[str, ...]:
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(_PREFIXES):
            names.append(node.value.partition(":")[0])
    return tuple(names)


def package_modules(package: str, root: Path) -> dict[str, Path]:
    """Every module in `package` (recursively), by dotted name."""
    folder = root.joinpath(*package.split("."))
    found = {}
    for source in sorted(folder.rglob("*.py")):
        parts = source.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = source
    return found


def stage_modules(package: str | None, root: Path) -> dict[str, Path]:
    """The project modules a stage in `package` runs: the package and `tasks.core`, and what they import, closed."""
    todo: dict[str, Path] = {}
    for seed in filter(None, (package, SHARED_PACKAGE)):
        todo.update(package_modules(seed, root))
        todo.update({name: path for name in _importing(seed) if (path := module_file(name, root))})
    done: dict[str, Path] = {}
    while todo:
        name, source = todo.popitem()
        done[name] = source
        for imported in imported_names(source, name):
            for candidate in _importing(imported):
                if candidate not in done and candidate not in todo and (path := module_file(candidate, root)):
                    todo[candidate] = path
    return done


def code_version(package: str | None, root: Path | None = None) -> str:
    """Hash of the source a stage in `package` runs (see module doc), so editing it invalidates the stage's outputs."""
    root = root or PROJECT_ROOT
    digest = hashlib.sha256()
    for source in sorted(stage_modules(package, root).values()):
        digest.update(source.relative_to(root).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]
