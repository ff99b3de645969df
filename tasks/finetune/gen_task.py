"""Generative task fine-tuning: `{input, output}` pairs (translation, summarisation, …) trained through the SFT path
with a task template, scored by exact match and chrF on a held-out split.

Each pair becomes a conversation: an optional system message (`system`, the task instruction), a user turn
(`user_template` with `{input}` filled in) and the assistant turn (`output`), so the SFT stage's loss falls on the
output only and the chat model answers the task after registration like any chat. The held-out pairs (`val_file`,
or a deterministic `val_fraction` by input hash) are both the SFT val set and the task eval set: each is answered
greedily with the fine-tuned model and compared with its reference. `exact_match` compares whitespace-normalised
strings; `chrf` is corpus-level chrF (Popović 2015, sacrebleu's default: character n-grams 1–6, whitespace removed,
β = 2), 0–100.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.artifacts import CheckpointRef, StageRef, file_sha256, finish_stage, load_done, reset_dir, stage_dir
from tasks.finetune.records import read_records
from tasks.finetune.sft import SFTConfig, run_sft
from tasks.finetune.sft_data import TRAIN, VAL, ConversationSet


class GenTaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train_file: str = Field(default="", description="Pairs {input, output}, .jsonl or .parquet.")
    val_file: str | None = Field(default=None, description="Held-out pairs; None = hold out val_fraction of train.")
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="Share held out without val_file.")
    system: str = Field(default="", description="Task instruction as a system message ('' = none).")
    user_template: str = Field(default="{input}", description="User turn; {input} is replaced by the pair's input.")
    sft: SFTConfig = Field(default_factory=SFTConfig, description="The SFT run (steps, lr, …).")
    max_new_tokens: int = Field(default=64, ge=1, description="Tokens generated per held-out input.")
    seed: int = Field(default=1337, description="Seed of the split.")


class GenTaskRef(StageRef):
    checkpoint: CheckpointRef = Field(description="The fine-tuned checkpoint (the SFT stage's output).")
    metrics: dict[str, float] = Field(description="task_exact_match, task_chrf, task_n.")


def read_pairs(path: Path | str) -> list[tuple[str, str]]:
    rows = read_records(path, "task data file")
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("input"), str) or not isinstance(row.get("output"), str):
            raise ValueError(f"{path}: row {n} needs string 'input' and 'output'; got keys {sorted(row)}")  # noqa: TRY004
    return [(row["input"], row["output"]) for row in rows]


def char_ngrams(text: str, n: int) -> Counter:
    text = "".join(text.split())  # sacrebleu's chrF ignores whitespace
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf(hypotheses: list[str], references: list[str], max_order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF: per order, n-gram matches / totals summed over the corpus; mean precision and recall over the
    orders that have n-grams; F-beta of the two, times 100."""
    precisions, recalls = [], []
    for n in range(1, max_order + 1):
        match = hyp_total = ref_total = 0
        for hyp, ref in zip(hypotheses, references, strict=True):
            h, r = char_ngrams(hyp, n), char_ngrams(ref, n)
            match += sum((h & r).values())
            hyp_total, ref_total = hyp_total + sum(h.values()), ref_total + sum(r.values())
        if hyp_total and ref_total:
            precisions.append(match / hyp_total)
            recalls.append(match / ref_total)
    if not precisions:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return 0.0 if p + r == 0 else 100 * (1 + beta**2) * p * r / (beta**2 * p + r)


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    same = [" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hypotheses, references, strict=True)]
    return sum(same) / max(1, len(same))


def messages(cfg: GenTaskConfig, source: str, target: str | None = None) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": cfg.system}] if cfg.system else []
    turns.append({"role": "user", "content": cfg.user_template.replace("{input}", source)})
    return turns + ([{"role": "assistant", "content": target}] if target is not None else [])


def write_conversations(cfg: GenTaskConfig, out: Path) -> tuple[ConversationSet, list[tuple[str, str]]]:
    """The pairs as a ConversationSet in `out` (the SFT stage's input) and the held-out pairs."""
    pairs = read_pairs(cfg.train_file)
    if cfg.val_file:
        train, val = pairs, read_pairs(cfg.val_file)
    else:

        def held_out(source: str) -> bool:
            digest = hashlib.sha256(f"{cfg.seed}:{source}".encode()).digest()
            return int.from_bytes(digest[:8], "big") / 2**64 < cfg.val_fraction

        train, val = [p for p in pairs if not held_out(p[0])], [p for p in pairs if held_out(p[0])]
    if not train or not val:
        raise ValueError(
            f"{cfg.train_file}: {len(pairs)} pairs give an empty train or val split; add pairs or val_file"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in ((TRAIN, train), (VAL, val)):
        lines = [json.dumps({"messages": messages(cfg, s, t), "source": "task"}, ensure_ascii=False) for s, t in rows]
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    ref = ConversationSet(path=str(out), files=[TRAIN, VAL], n_train=len(train), n_val=len(val))
    return finish_stage(out, ref, config=cfg, entry=run_gen_task, stats={"train": len(train), "val": len(val)}), val


def run_gen_task(cfg: GenTaskConfig, base: CheckpointRef, out: Path) -> GenTaskRef:
    """Fine-tune `base` on the task through SFT (in `out/sft`), then answer the held-out inputs and score them."""
    from models.inference.generate import ChatEngine

    t0 = time.time()
    reset_dir(out)
    data, val = write_conversations(cfg, out / "data")
    tuned = run_sft(cfg.sft, base, data, out / "sft")
    engine = ChatEngine.from_checkpoint(tuned.dir / tuned.checkpoint)
    answers = [
        engine.complete(messages(cfg, source), max_tokens=cfg.max_new_tokens, temperature=0.0)[0] for source, _ in val
    ]
    references = [target for _, target in val]
    metrics = {
        "task_exact_match": exact_match(answers, references),
        "task_chrf": chrf(answers, references),
        "task_n": float(len(val)),
    }
    rows = [{"input": s, "reference": t, "answer": a} for (s, t), a in zip(val, answers, strict=True)]
    (out / "predictions.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    ref = GenTaskRef(path=str(out), checkpoint=tuned, metrics=metrics)
    stats = {**metrics, "seconds": time.time() - t0}
    return finish_stage(out, ref, config=cfg, entry=run_gen_task,
                        stats=stats, files=["predictions.jsonl", "metrics.json"], started=t0)


@task(name="gen-task", retries=1)
def gen_task(cfg: GenTaskConfig, base: CheckpointRef) -> GenTaskRef:
    out = stage_dir(
        "gen-task",
        cfg,
        base,
        *[StageRef(path=f, manifest_sha256=file_sha256(Path(f))) for f in (cfg.train_file, cfg.val_file) if f],
        entry=run_gen_task,
    )
    return load_done(out, GenTaskRef) or run_gen_task(cfg, base, out)
