"""The source code a stage runs, hashed into its cache key (`tasks.core.artifacts.config_hash`).

A stage's code starts at the module that defines its entry function (`run_curate` is in `tasks.curate.curate`) and
takes in every project module that module imports, closed over the import graph, walked with `ast` from the source
files themselves, so nothing is imported and no list is kept by hand. Imports inside functions count (heavy
dependencies load lazily), and so does a string naming a project module, the target of `importlib`
(`models.architectures.registry.ARCHS` names `"models.architectures.rnn:RNNLM"`). Importing `a.b.c` runs `a/__init__.py`
and `a/b/__init__.py` too, so those are part of the code; a sibling module nobody imports is not.

What is hashed is each module's syntax tree without docstrings (comments and layout never reach the tree), so a
docstring, comment or formatting edit reruns nothing; an edit of `tasks/core/pii_phone.py` reruns the stages whose
entry reaches it (curate), and the stages after those rerun because their input's manifest changed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: tasks/core/ is two levels down
PROJECT_PACKAGES = ("flows", "tasks", "models", "infra")
_PREFIXES = tuple(f"{package}." for package in PROJECT_PACKAGES)


def entry_module(entry: Callable[..., object]) -> str:
    """The dotted name of the module defining `entry`, also when that module runs as `python -m` (`__main__`)."""
    module = entry.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    return module


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


@functools.lru_cache(maxsize=1024)  # keyed by the source bytes: parsing is most of the cost, and exact when edited
def code_tree(code: bytes) -> ast.Module:
    """`code` parsed, with every module, class and function docstring removed (comments never reach the tree)."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str
            ):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=1024)
def normalized_code(code: bytes) -> str:
    """What a module's hash covers: its tree without docstrings or positions, so layout and prose edits keep it."""
    return ast.dump(code_tree(code), include_attributes=False)


def imported_names(source: Path, module: str) -> tuple[str, ...]:
    """Every module name `source` (module `module`) may import: import statements anywhere, `from x import y` as
    both `x` and `x.y` (y may be a submodule), and string constants of the form `pkg.mod` or `pkg.mod:attr`."""
    return _imported_names(source.read_bytes(), module, source.name == "__init__.py")


@functools.lru_cache(maxsize=1024)
def _imported_names(code: bytes, module: str, is_package: bool) -> tuple[str, ...]:
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(code_tree(code)):  # without docstrings: prose naming a module imports nothing
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(_PREFIXES):
            names.append(node.value.partition(":")[0])
    return tuple(names)


def stage_modules(seed: str, root: Path) -> dict[str, Path]:
    """The project modules a stage whose entry function is defined in module `seed` runs: `seed`, the packages
    importing it runs, and what they import, closed. Empty when `seed` is no project module (a test's)."""
    todo = {name: path for name in _importing(seed) if (path := module_file(name, root))}
    done: dict[str, Path] = {}
    while todo:
        name, source = todo.popitem()
        done[name] = source
        for imported in imported_names(source, name):
            for candidate in _importing(imported):
                if candidate not in done and candidate not in todo and (path := module_file(candidate, root)):
                    todo[candidate] = path
    return done


def code_version(entry: Callable[..., object], root: Path | None = None) -> str:
    """Hash of the code the stage whose entry function is `entry` runs (see module doc): editing it invalidates the
    stage's outputs, editing anything else (or only prose) keeps them."""
    root = root or PROJECT_ROOT
    digest = hashlib.sha256()
    for source in sorted(stage_modules(entry_module(entry), root).values()):
        digest.update(source.relative_to(root).as_posix().encode() + b"\0")
        digest.update(normalized_code(source.read_bytes()).encode() + b"\0")
    return digest.hexdigest()[:16]
