"""Errors a newcomer meets, as one paragraph naming the thing and the fix (the CLI prints these, no traceback).

`explain(error, …)` turns an exception from a command into that paragraph; `config_message(error)` does the same for
a config that does not load (an unknown preset, a YAML syntax error, a misspelt key). Anything not recognised still
gets one paragraph: what failed, where the full traceback is, and `--verbose`.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ValidationError


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions it was raised from (Prefect and our stages wrap causes)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def disk_full(error: BaseException) -> OSError | None:
    return next((e for e in chain(error) if isinstance(e, OSError) and e.errno == errno.ENOSPC), None)


def explain(error: BaseException, command: str, stage: str | None = None, log_file: Path | None = None) -> str:
    """One paragraph for `error`, raised by `lmforge <command>` (in pipeline stage `stage`, if known)."""
    where = f" in stage {stage}" if stage else ""
    see = f" The full log is {log_file}." if log_file else ""
    if (full := disk_full(error)) is not None:
        path = full.filename or "a file under LMFORGE_HOME"
        return (f"lmforge {command}: the disk is full{where} (writing {path}). Free space on that filesystem "
                f"(`df -h {Path(str(path)).parent}`) or point LMFORGE_HOME at a larger disk, then rerun the same "
                f"command: finished stages are kept and the run resumes at{where or ' the stage that failed'}.{see}")
    if getattr(error, "newcomer_message", False):  # our own errors that already name the thing and the fix
        return f"lmforge {command}{where}: {error}{see}"
    for cause in chain(error):
        if isinstance(cause, (FileNotFoundError, PermissionError)) and cause.filename is None and str(cause):
            return f"lmforge {command}{where}: {cause}{see}"  # ours: the message names the file and the fix
    return (f"lmforge {command} failed{where}: {type(error).__name__}: {error}.{see} "
            f"Rerun with --verbose to see the traceback here.")


def field_names(model_type: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at `loc`'s parent (for a 'did you mean' on a misspelt key)."""
    from flows.config import config_section

    current: type[BaseModel] | None = model_type
    for part in loc[:-1]:
        current = config_section(current, str(part)) if current is not None else None
    return list(current.model_fields) if current is not None else []


def config_message(error: Exception, model_type: type[BaseModel] | None = None) -> str:
    """A config that does not load, as one paragraph: which key or line, and how to fix it."""
    import yaml

    if isinstance(error, yaml.YAMLError):
        mark = getattr(error, "problem_mark", None)
        place = f"{mark.name} line {mark.line + 1}, column {mark.column + 1}" \
            if mark is not None else "the YAML"
        problem = getattr(error, "problem", None) or str(error)
        return (f"invalid config: {place}: {problem}. YAML wants `key: value` with a space after the colon and "
                "sections indented by spaces (no tabs); `lmforge config > my.yaml` writes a valid file to start from.")
    if isinstance(error, ValidationError):
        lines = []
        for item in error.errors():
            key = ".".join(str(p) for p in item["loc"])
            if item["type"] == "extra_forbidden" and model_type is not None:
                close = difflib.get_close_matches(str(item["loc"][-1]), field_names(model_type, item["loc"]), n=1)
                hint = f" (did you mean `{'.'.join([*map(str, item['loc'][:-1]), close[0]])}`?)" if close else ""
                lines.append(f"unknown key `{key}`{hint}")
            else:
                lines.append(f"`{key}`: {item['msg']}")
        return (f"invalid config: {'; '.join(lines)}. `lmforge config` prints every key with its current value "
                "(for eval and finetune, the keys are those of the command's own config).")
    if isinstance(error, KeyError):
        return f"invalid config: {error.args[0] if error.args else error}"
    return f"invalid config: {error}"
