"""Command-line flags generated from a pydantic config: one `--kebab-name` per field, its type, choices, default and
help taken from the field, so a field added to the config is a flag without an edit here (`lmforge serve`)."""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from flows.cli.sources import config_error

SCALARS = (int, float, str)


def flag_kwargs(model_type: type[BaseModel], name: str) -> dict[str, Any]:
    """`add_argument` keywords for field `name`: scalars keep their type, a `Literal` its values as choices, a bool
    becomes `--x/--no-x`; a field of any other type has no command-line form and is an error here, not at run time."""
    field = model_type.model_fields[name]
    default = field.get_default(call_default_factory=True)
    kwargs: dict[str, Any] = {"dest": name, "default": default, "help": f"{field.description} (default: {default})"}
    annotation = field.annotation
    if typing.get_origin(annotation) is Literal:
        choices = list(typing.get_args(annotation))
        return {**kwargs, "choices": choices, "type": type(choices[0])}
    if annotation is bool:
        return {**kwargs, "action": argparse.BooleanOptionalAction}
    if annotation in SCALARS:
        return {**kwargs, "type": annotation}
    raise TypeError(f"{model_type.__name__}.{name} ({annotation}) has no command-line flag: give it a scalar type "
                    "or leave it out of the flags")


def add_model_flags(parser: argparse.ArgumentParser, model_type: type[BaseModel],
                    names: Iterable[str] | None = None, flags: Mapping[str, str] | None = None) -> None:
    """A flag for each field of `model_type` in `names` (default: every field); `flags` renames some (field → flag)."""
    for name in names if names is not None else model_type.model_fields:
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        kwargs = flag_kwargs(model_type, name)
        if "type" in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()  # the flag's name, not the field's
        parser.add_argument(flag, **kwargs)


def model_from_flags(model_type: type[BaseModel], args: argparse.Namespace) -> BaseModel:
    """`model_type` from the flags `add_model_flags` added to the command (the rest keep their defaults); a value
    the config rejects (e.g. `--max-request-bytes 10`) ends the command with the field named, exit 2."""
    given = {name: getattr(args, name) for name in model_type.model_fields if hasattr(args, name)}
    try:
        return model_type(**given)
    except ValidationError as error:
        raise config_error(error, model_type) from None
