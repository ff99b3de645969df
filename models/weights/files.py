"""Atomic JSON writes and file hashes, shared by checkpoint sidecars, imported weights and stage manifests.

Apart from `models.weights.checkpoint` so that a stage writing a manifest imports this and nothing else of `models`: the
code a stage's cache key covers is what it imports (`tasks.core.stage_code`), and the checkpoint loader imports the
model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON under a temporary name and rename it into place, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
