"""Preference data stage: (prompt, chosen, rejected) pairs for DPO, from people's files or built without labels.

Every pair is normalised to `{"prompt": [messages...], "chosen": text, "rejected": text}`: the prompt is an OpenAI
`messages` list ending with a user turn, the two answers are the assistant's next turn. Files may be:
- **HH-RLHF**: `{"chosen": "\\n\\nHuman: …\\n\\nAssistant: …", "rejected": …}`, two whole dialogues that share
  everything but the last assistant turn;
- **TRL / UltraFeedback**: `{"prompt": [...], "chosen": [...], "rejected": [...]}` with message lists (the answers a
  single assistant message; a prompt may also be a string), or without `prompt`, two whole conversations sharing a
  prefix (TRL's implicit prompt).
A line that is none of these raises naming `file:line`.

**Pairs without labels** (`spin=True`), so DPO runs on a fresh machine with no human preferences (SPIN, Chen et al.,
2024): for each SFT conversation (the seed set, the Q&A derived from the crawled pages, the user's files, as
`tasks.finetune.sft_data` built them) the reference answer is *chosen* and the starting model's own sampled answer
to the same prompt is *rejected*. Its limits: it assumes the reference answer beats the model's sample, true while
the model is weaker than its SFT data and less so as it catches up (SPIN's fixed point, where the pairs stop
teaching); it teaches imitation of the SFT data, not what people prefer; and a derived answer is only as good as
the crawled prose it was cut from. Pairs whose sample equals the reference are dropped.

A hash of the prompt sends a pair to `val.jsonl`, so the held-out pairs are never trained on, and pairs of one
prompt stay on one side; when the fraction picks no prompt, the one with the lowest hash is held out.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from models.text.chat import validate_messages
from tasks.core.artifacts import CheckpointRef, StageRef, file_sha256, finish_stage, load_done, reset_dir, stage_dir
from tasks.finetune.records import read_records
from tasks.finetune.sft_data import TRAIN, VAL, ConversationSet, load_conversations, unit_hash

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


class PreferenceSet(StageRef):
    """Preference pairs as JSONL (`{"prompt", "chosen", "rejected", "source"}` per line), split into train and val."""

    files: list[str] = Field(description="train.jsonl and val.jsonl, relative to `path`.")
    n_train: int
    n_val: int


class PreferenceDataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: list[str] = Field(default_factory=list, description="Preference files (.jsonl/.parquet): HH-RLHF or TRL.")
    spin: bool = Field(
        default=True, description="Build label-free pairs: the SFT reference answer (chosen) against the starting "
        "model's own sample (rejected).",
    )
    max_spin_pairs: int = Field(default=200, ge=0, description="At most this many label-free pairs.")
    spin_max_tokens: int = Field(default=96, ge=1, description="Longest sampled (rejected) answer, in tokens.")
    spin_temperature: float = Field(default=0.8, ge=0, description="Sampling temperature of the rejected answers.")
    max_pairs: int = Field(default=0, ge=0, description="Keep at most this many pairs from the files (0 = all).")
    skip_bad_lines: bool = Field(
        default=False, description="Leave out (and count) malformed rows instead of failing; HH-RLHF has a few "
        "dialogues with merged turns. A line that is not JSON still fails.",
    )
    val_fraction: float = Field(default=0.1, ge=0, lt=1, description="Share of prompts held out (never trained on).")
    seed: int = Field(default=0, description="Seed of the split and the sampling.")


def parse_hh(text: str) -> list[dict[str, str]]:
    """An HH-RLHF dialogue (`\\n\\nHuman: …\\n\\nAssistant: …`) as messages."""
    parts = _HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise ValueError("expected an HH-RLHF dialogue starting with '\\n\\nHuman:'")
    return [{"role": _HH_ROLES[role], "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2])]


def as_messages(value: Any, what: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return parse_hh(value) if value.startswith("\n\nHuman:") else [{"role": "user", "content": value}]
    try:
        return validate_messages(value)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def answer_of(messages: list[dict[str, str]], what: str) -> str:
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise ValueError(f"{what} must be one assistant message after the prompt, got {[m['role'] for m in messages]}")
    return messages[0]["content"]


def normalise_pair(record: dict[str, Any]) -> dict[str, Any]:
    """One file row as {"prompt", "chosen", "rejected"}; ValueError saying what is wrong."""
    if "chosen" not in record or "rejected" not in record:
        raise ValueError(f"needs 'chosen' and 'rejected' (HH-RLHF or TRL format), has {sorted(record)}")
    if isinstance(record["chosen"], str) and "prompt" not in record:  # HH-RLHF: two whole dialogues
        chosen, rejected = parse_hh(record["chosen"]), as_messages(record["rejected"], "rejected")
    elif "prompt" in record:  # explicit prompt: answers are one assistant message (or its text)
        prompt = as_messages(record["prompt"], "prompt")
        answers = [as_messages([{"role": "assistant", "content": a}] if isinstance(a, str) else a, key)
                   for key, a in (("chosen", record["chosen"]), ("rejected", record["rejected"]))]
        chosen, rejected = prompt + answers[0], prompt + answers[1]
    else:  # implicit prompt: two whole conversations
        chosen, rejected = as_messages(record["chosen"], "chosen"), as_messages(record["rejected"], "rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    prompt = chosen[:shared]
    if not prompt or prompt[-1]["role"] != "user":
        raise ValueError("chosen and rejected must share a prompt that ends with a user turn")
    return {"prompt": prompt, "chosen": answer_of(chosen[shared:], "chosen"),
            "rejected": answer_of(rejected[shared:], "rejected")}


def read_pairs(path: Path | str, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Every pair of a preference file; a bad row raises naming `file:line` (or `file row N` for Parquet), or, when
    `skipped` is a list, is left out and its `file:line: reason` appended there."""
    path = Path(path)
    rows = read_records(path, "preference file")
    lines = ([n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
             if path.suffix != ".parquet" else None)
    pairs = []
    for i, record in enumerate(rows):
        try:
            pairs.append(normalise_pair(record))
        except ValueError as err:
            where = f"{path}:{lines[i]}" if lines is not None else f"{path} row {i}"
            if skipped is None:
                raise ValueError(f"{where}: {err}") from None
            skipped.append(f"{where}: {err}")
    return pairs


def spin_pairs(checkpoint_dir: Path, conversations: list[list[dict[str, str]]], cfg: PreferenceDataConfig,
               stats: dict[str, int]) -> list[dict[str, Any]]:
    """Label-free pairs: each conversation's last assistant answer (chosen) against the model's sample (rejected)."""
    from models.inference.generate import ChatEngine

    engine = ChatEngine.from_checkpoint(checkpoint_dir, device="cpu")
    pairs = []
    for n, messages in enumerate(conversations):
        if len(pairs) >= cfg.max_spin_pairs:
            break
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=0)
        if last == 0 or messages[last - 1]["role"] != "user":
            continue
        prompt, reference = messages[:last], messages[last]["content"].strip()
        try:
            sample, _, _, _ = engine.complete(prompt, max_tokens=cfg.spin_max_tokens,
                                              temperature=cfg.spin_temperature, seed=cfg.seed + n)
        except ValueError:  # the prompt's fixed part (system message) leaves no room in the model's context
            stats["spin_dropped_prompt_too_long"] = stats.get("spin_dropped_prompt_too_long", 0) + 1
            continue
        if sample.strip() == reference:
            stats["spin_dropped_same_answer"] = stats.get("spin_dropped_same_answer", 0) + 1
            continue
        pairs.append({"prompt": prompt, "chosen": reference, "rejected": sample})
    return pairs


def run_preference_data(cfg: PreferenceDataConfig, base: CheckpointRef | None, conversations: ConversationSet | None,
                        out: Path) -> PreferenceSet:
    t0 = time.time()
    if any(out.iterdir()):  # leftovers of a killed run
        reset_dir(out)
    sources: list[tuple[str, list[dict[str, Any]]]] = []
    stats: dict[str, Any] = {"sources": {}}
    for name in cfg.files:
        skipped: list[str] = []
        pairs = read_pairs(name, skipped if cfg.skip_bad_lines else None)
        if skipped:
            stats[f"skipped_bad_lines:{Path(name).name}"] = len(skipped)
            stats["skipped_examples"] = skipped[:5]
        sources.append((f"file:{Path(name).name}", pairs[: cfg.max_pairs] if cfg.max_pairs else pairs))
    if cfg.spin:
        if base is None or conversations is None:
            raise ValueError("preference spin=True needs the starting model and SFT conversations to build pairs from")
        found = load_conversations(conversations) + load_conversations(conversations, VAL)
        sources.append(("spin", spin_pairs(base.dir / base.checkpoint, found, cfg, stats)))
    hashed = [(unit_hash(cfg.seed, json.dumps(pair["prompt"], sort_keys=True), "val"), source, pair)
              for source, pairs in sources for pair in pairs]
    # at least one held-out prompt (the gate compares on it): the lowest hash when the fraction picks none
    threshold = cfg.val_fraction
    hashes = {h for h, _, _ in hashed}
    if cfg.val_fraction > 0 and len(hashes) > 1 and min(hashes) >= threshold:
        threshold = min(hashes) + 1e-12
    split: dict[str, list[str]] = {TRAIN: [], VAL: []}
    for h, source, pair in hashed:
        split[VAL if h < threshold else TRAIN].append(json.dumps({**pair, "source": source}, ensure_ascii=False))
    stats["sources"] = {source: len(pairs) for source, pairs in sources}
    if not split[TRAIN]:
        raise ValueError("no preference pairs to train on: add preference files (HH-RLHF or TRL format) or set "
                         "spin=true")
    for name, lines in split.items():
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    stats |= {"train": len(split[TRAIN]), "val": len(split[VAL])}
    ref = PreferenceSet(path=str(out), files=[TRAIN, VAL], n_train=len(split[TRAIN]), n_val=len(split[VAL]))
    return finish_stage(out, ref, config=cfg, entry=run_preference_data, stats=stats, started=t0)


def load_pairs(data: PreferenceSet, name: str = TRAIN) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (data.dir / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@task(name="preference-data", retries=1)
def preference_data(cfg: PreferenceDataConfig, base: CheckpointRef | None = None,
                    conversations: ConversationSet | None = None) -> PreferenceSet:
    files = [StageRef(path=name, manifest_sha256=file_sha256(Path(name))) for name in cfg.files if Path(name).is_file()]
    inputs = [*files, *([base, conversations] if cfg.spin and base is not None and conversations is not None else [])]
    out = stage_dir("preference-data", cfg, *inputs, entry=run_preference_data)
    return load_done(out, PreferenceSet) or run_preference_data(cfg, base, conversations, out)
