"""Pinned evaluation: what a score depends on besides the model, recorded so that only like is compared with like.

`report.json` carries `pins` (an `EvalPins`):
- `scorer_version`: `SCORER_VERSION`, the version of lmforge's scoring (how a model and an eval file become numbers);
- `files`: per eval-set group (`val`, `text/<stem>`, `hellaswag`, `crows`, `core`, …), the full sha256 of each file
  the group was scored on (the val split as `val_docs.jsonl`, the very bytes written beside the report);
- `baselines`: per group, the version of the random baselines its centered scores use (CORE: DCLM's `v1` or `v2`),
  set by the scorer that uses them.

Every scorer adds the files it reads (`add_file`) and, if any, its baseline version (`set_baseline`) to the pins
`evaluate_model` hands it. Each group's `eval_sets` fingerprint then folds in that group's pins (`fold`), so the
promotion gate's same-eval-set check (`tasks.registry.register.same_eval_set`, over the `lmforge.eval_set.<group>`
version tags) sees another scorer version, file hash or baseline version as another eval set: not comparable, and the
champion is re-scored under the challenger's pins (`tasks.evaluate.rescore`). File hashes enter the fingerprint
without their paths, so the same bytes at another path compare.

When to bump `SCORER_VERSION`: on any change that can move a reported number for the same model and the same eval
files — prompt or few-shot format, what is tokenized and how (BOS, delimiters, cropping to the context), windowing,
normalisation (`acc_norm`), aggregation, which items count. Not for refactors, speed-ups that give the same numbers,
new metrics or eval sets beside unchanged ones, or docs. A bump makes every earlier champion "not comparable" once:
the gate re-scores it with the new scorer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from models.weights.files import file_sha256

# lmforge's scoring version; see the module docstring for when it is bumped.
SCORER_VERSION = 1


class EvalPins(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scorer_version: int = Field(description="tasks.evaluate.pins.SCORER_VERSION of the code that scored the report.")
    files: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Eval-set group -> {file as configured: full sha256 of its bytes}."
    )
    baselines: dict[str, str] = Field(
        default_factory=dict, description="Eval-set group -> version of the random baselines its centered scores use."
    )

    @classmethod
    def current(cls) -> EvalPins:
        """Empty pins of the code running now (read at call time: a bump applies to the next evaluation)."""
        return cls(scorer_version=SCORER_VERSION)

    def add_file(self, group: str, path: Path | str, name: str | None = None) -> str:
        """Pin `path` (named `name`, default the path as given) under `group`; returns its sha256."""
        digest = file_sha256(Path(path))
        self.files.setdefault(group, {})[name or str(path)] = digest
        return digest

    def add_bytes(self, group: str, name: str, data: bytes) -> str:
        """Pin a file by the bytes it has (or will have) on disk."""
        digest = hashlib.sha256(data).hexdigest()
        self.files.setdefault(group, {})[name] = digest
        return digest

    def set_baseline(self, group: str, version: str) -> None:
        self.baselines[group] = version

    def fold(self, group: str, fingerprint: str) -> str:
        """`group`'s eval-set fingerprint under these pins: equal only for the same data, scorer and baselines."""
        payload = {"set": fingerprint, "scorer_version": self.scorer_version,
                   "files": sorted(self.files.get(group, {}).values()), "baseline": self.baselines.get(group)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def fold_all(self, eval_sets: dict[str, str]) -> dict[str, str]:
        return {group: self.fold(group, fingerprint) for group, fingerprint in eval_sets.items()}

    def markdown(self) -> list[str]:
        """The pins as markdown lines (the model card, report.md)."""
        lines = [f"- lmforge scorer version: {self.scorer_version}"]
        lines += [f"- `{group}` random baselines: {version}" for group, version in sorted(self.baselines.items())]
        lines += [f"- `{group}` file `{name}`: sha256 `{digest}`"
                  for group, files in sorted(self.files.items()) for name, digest in sorted(files.items())]
        return lines


def read_pins(report: dict) -> EvalPins | None:
    """The pins of a loaded report.json; None for a report written before pins existed."""
    return EvalPins.model_validate(report["pins"]) if "pins" in report else None
