"""How much code each stage's cache key covers: for every `stage_dir(name, …, entry=run_…)` call under `tasks/`
(found with `ast`, so no list of stages is kept here), the module defining the entry and the number of project
modules its key hashes (`tasks.core.stage_code`), `tasks.core` ones apart. Fewer modules = fewer needless reruns.

    .venv/bin/python -m bench.stage_keys [--modules STAGE]
"""

from __future__ import annotations

import argparse
import ast

from tasks.core.stage_code import PROJECT_ROOT, stage_modules


def stage_entries() -> dict[str, str]:
    """Stage name → the module defining its entry function, from each `stage_dir` call's `entry=` keyword."""
    found: dict[str, str] = {}
    for path in sorted((PROJECT_ROOT / "tasks").rglob("*.py")):
        module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "stage_dir" and node.args:
                name = node.args[0]
                if isinstance(name, ast.Constant) and any(k.arg == "entry" for k in node.keywords):
                    found[name.value] = module  # the entry is defined beside the task calling stage_dir
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", metavar="STAGE", help="list the modules STAGE's key covers")
    args = parser.parse_args()
    entries = stage_entries()
    if args.modules:
        print("\n".join(sorted(stage_modules(entries[args.modules], PROJECT_ROOT))))
        return
    print(f"| {'stage':<16} | {'entry module':<28} | modules | of them tasks.core |")
    print(f"| {'-' * 16} | {'-' * 28} | ------- | ------------------ |")
    for stage, module in entries.items():
        covered = stage_modules(module, PROJECT_ROOT)
        core = sum(name == "tasks.core" or name.startswith("tasks.core.") for name in covered)
        print(f"| {stage:<16} | {module:<28} | {len(covered):>7} | {core:>18} |")


if __name__ == "__main__":
    main()
