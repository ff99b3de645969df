"""Rows of a user's task data file (JSON Lines, or Parquet by its suffix), for the fine-tuning entry points that
take one (`classify`, `gen_task`); each checks the fields it needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_records(path: Path | str, what: str) -> list[dict[str, Any]]:
    """Every row of `path` as a dict. A missing file, or a line that is not a JSON object, raises naming `what`
    (the config field's role, e.g. "classify data file"), the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not JSON ({err.msg}); expected one object per line") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows
