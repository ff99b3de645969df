"""SFT data stage: the chat conversations fine-tuning trains on, built reproducibly and scrubbed like curated text.

Three sources, each optional, all in OpenAI `messages` form (`[{"role": ..., "content": ...}, ...]`):
- **the team-written seed set** `tasks/sft_seed.jsonl`: greetings, who the model is, how to ask it things, refusals;
- **conversations derived from the curated corpus**: in each document, a *heading* (a short line without closing
  punctuation; Sphinx's trailing `¶` and section numbers such as `1.2.3.` are stripped) followed by *prose* (lines of
  40+ characters, mostly letters, not code or shell prompts) becomes a user question about the heading, asked with
  one of `QUESTION_TEMPLATES`, and an answer made of the prose under it, cut at a sentence end. Which sections, which
  template, whether a second section becomes a follow-up turn and whether a system prompt is added are all decided
  by a hash of (seed, document id, heading), so the same corpus and config always give the same conversations;
- **the user's own files**: JSONL (one `{"messages": [...]}` per line) or Parquet (a `messages` column).
Every conversation then goes through curation's PII scrubber (`tasks.core.pii.scrub_pii`) and toxicity filter
(`tasks.core.toxicity.is_toxic`), exact duplicates are dropped, and a hash-based share goes to `val.jsonl`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from models.text.chat import validate_messages
from tasks.core.artifacts import ShardSet, StageRef, file_sha256, finish_stage, load_done, reset_dir, stage_dir

SEED_FILE = Path(__file__).with_name("sft_seed.jsonl")
TRAIN, VAL = "train.jsonl", "val.jsonl"
QUESTION_TEMPLATES = (
    "Tell me about {topic}.",
    "Can you explain {topic}?",
    "What does the documentation say about {topic}?",
    "Give me a short overview of {topic}.",
    "I am reading about {topic}. What should I know?",
)
FOLLOW_UP_TEMPLATES = ("And what about {topic}?", "Thanks. Now tell me about {topic}.")
SYSTEM_PROMPT = "You are a helpful assistant that answers questions about software documentation."
# Admonition and navigation labels look like headings but head no topic.
NOT_TOPICS = {"note", "warning", "see also", "example", "examples", "tip", "important", "caution", "seealso",
              "table of contents", "contents", "navigation", "previous topic", "next topic", "this page", "footnotes"}
_FUNCTION_WORDS = {"a", "an", "the", "of", "to", "and", "or", "in", "on", "for", "with", "is", "are", "be", "by", "as",
                   "at", "from", "that", "this", "it", "not", "if", "when", "which", "can", "will", "its", "their"}
_SECTION_NUMBER = re.compile(r"^(?:(?:chapter|section|appendix)\s+)?[\dA-Z]{1,3}(?:\.\d+)*\.?\s+", re.IGNORECASE)


class ConversationSet(StageRef):
    """Chat conversations as JSONL (`{"messages": [...], "source": ...}` per line), split into train and val."""

    files: list[str] = Field(description="train.jsonl and val.jsonl, relative to `path`.")
    n_train: int
    n_val: int


class SFTDataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: list[str] = Field(default_factory=list, description="User conversation files: .jsonl or .parquet, `messages`.")
    seed_set: bool = Field(default=True, description="Include the team-written conversations (tasks/sft_seed.jsonl).")
    derive_from_corpus: bool = Field(default=True, description="Derive Q&A conversations from the curated shards.")
    corpus_files: list[str] = Field(
        default_factory=list, description="More curated Parquet shards (`text` column) to derive conversations from."
    )
    languages: list[str] = Field(default_factory=lambda: ["en"], description="Corpus languages used (empty = all).")
    max_derived: int = Field(default=5000, ge=0, description="At most this many derived conversations.")
    max_per_doc: int = Field(default=3, ge=1, description="At most this many sections of one document.")
    min_answer_chars: int = Field(default=80, ge=1, description="Shortest derived answer kept.")
    max_answer_chars: int = Field(default=600, ge=40, description="Derived answers are cut at a sentence end here.")
    follow_up_fraction: float = Field(default=0.25, ge=0, le=1, description="Share with a second, follow-up turn.")
    system_prompt_fraction: float = Field(default=0.3, ge=0, le=1, description="Share given a system prompt.")
    scrub_pii: bool = Field(default=True, description="Replace e-mails, phones, IPs, card numbers with placeholders.")
    max_badword_ratio: float = Field(default=0.01, ge=0, description="Toxicity: drop above this bad-word share.")
    val_fraction: float = Field(default=0.05, ge=0, lt=1, description="Share of conversations held out for val loss.")
    seed: int = Field(default=0, description="Seed of every hash-based choice.")


def unit_hash(*parts: Any) -> float:
    """A number in [0, 1) fixed by `parts`: order-independent, reproducible randomness."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def heading_topic(line: str, previous: str | None = None) -> str | None:
    """The topic a heading line names, or None when the line is not a heading.

    `previous` is the line before: text extraction keeps the line breaks of wrapped paragraphs, so a short line
    after prose that does not end a sentence is the tail of a paragraph, not a heading (Sphinx's `¶` overrides).
    """
    sphinx = line.rstrip().endswith("¶")
    text = _SECTION_NUMBER.sub("", line.strip().rstrip("¶").strip()).strip()
    if not 3 <= len(text) <= 80 or text[-1] in ".,:;!?" or text.lower() in NOT_TOPICS:
        return None
    if text.startswith((">>>", "$", "#", "...", "-", "*")) or any(c in text for c in "=(){}[]<>|\\"):
        return None  # code, shell lines, signatures, list bullets
    wrapped = previous is not None and is_prose(previous) and not previous.rstrip().endswith((".", "!", "?", ":"))
    if wrapped and not sphinx:
        return None
    if ": " in text or (not text[0].isupper() and " — " not in text):
        return None  # "Source code: Lib/x.py" lines; lower-case Sphinx headings are identifiers (argparse's "default")
    words = text.split()
    if not sphinx and (len(words) < 2 or words[-1].lower() in _FUNCTION_WORDS):
        return None  # a wrapped paragraph line ("... of the socket to the")
    return text if sum(c.isalpha() for c in text) >= 0.6 * len(text.replace(" ", "")) else None


def is_prose(line: str) -> bool:
    text = line.strip()
    if len(text) < 40 or "¶" in text or text.startswith((">>>", "$", "#", "...", "|", "-", "*")):
        return False
    if text.startswith(("Changed in version", "New in version", "Deprecated since", "Source code:")):
        return False
    return sum(c.isalpha() or c == " " for c in text) >= 0.75 * len(text)


def cut_answer(lines: list[str], max_chars: int) -> str:
    """Prose lines joined, cut after the last sentence end that fits in `max_chars` (never ending on a colon)."""
    text = " ".join(" ".join(line.split()) for line in lines)
    if len(text) <= max_chars and text.endswith((".", "!", "?")):
        return text
    head = text[: max_chars + 1] + " "
    end = max(head.rfind(". "), head.rfind("? "), head.rfind("! "))
    return head[: end + 1] if end > 0 else ""


def sections(text: str, cfg: SFTDataConfig) -> list[tuple[str, str]]:
    """(topic, answer) for every heading directly followed by a paragraph of prose starting with a capital."""
    lines = [line for line in text.splitlines() if line.strip()]
    found = []
    for i, line in enumerate(lines):
        topic = heading_topic(line, lines[i - 1] if i else None)
        if topic is None or i + 1 == len(lines) or not lines[i + 1].strip()[:1].isupper():
            continue
        prose: list[str] = []
        start = i + 2 if lines[i + 1].startswith("Source code:") and i + 2 < len(lines) else i + 1
        for j in range(start, len(lines)):
            if not is_prose(lines[j]) or heading_topic(lines[j], lines[j - 1]):
                break
            prose.append(lines[j])
        answer = cut_answer(prose, cfg.max_answer_chars)
        if len(answer) >= cfg.min_answer_chars:
            found.append((topic, answer))
    return found


def derive_conversations(doc_id: str, text: str, cfg: SFTDataConfig) -> list[list[dict[str, str]]]:
    """Question/answer conversations from one document's headings and the prose under them (see module doc)."""
    found = sorted(sections(text, cfg), key=lambda s: unit_hash(cfg.seed, doc_id, s[0]))[: cfg.max_per_doc * 2]
    conversations = []
    while found and len(conversations) < cfg.max_per_doc:
        topic, answer = found.pop(0)
        key = (cfg.seed, doc_id, topic)
        template = QUESTION_TEMPLATES[int(unit_hash(*key, "template") * len(QUESTION_TEMPLATES))]
        messages = [{"role": "user", "content": template.format(topic=topic)}, {"role": "assistant", "content": answer}]
        if found and unit_hash(*key, "follow-up") < cfg.follow_up_fraction:
            topic2, answer2 = found.pop(0)
            follow = FOLLOW_UP_TEMPLATES[int(unit_hash(*key, "follow-template") * len(FOLLOW_UP_TEMPLATES))]
            messages += [{"role": "user", "content": follow.format(topic=topic2)},
                         {"role": "assistant", "content": answer2}]
        if unit_hash(*key, "system") < cfg.system_prompt_fraction:
            messages.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
        conversations.append(messages)
    return conversations


def read_conversations(path: Path) -> list[list[dict[str, str]]]:
    """Conversations of a user file; a malformed one raises naming the file and line/row."""
    if not path.is_file():
        raise FileNotFoundError(f"sft_data.files: {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "messages" not in table.column_names:
            raise ValueError(f"{path}: Parquet file needs a 'messages' column, has {table.column_names}")
        rows = [(f"row {i}", m) for i, m in enumerate(table.column("messages").to_pylist())]
    elif path.suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{n}: not JSON ({err.msg}); expected one {{'messages': [...]}} per line") from None
                rows.append((f"line {n}", record.get("messages") if isinstance(record, dict) else None))
    else:
        raise ValueError(f"{path}: unsupported conversation file; use .jsonl or .parquet with a 'messages' field")
    out = []
    for where, messages in rows:
        try:
            out.append(validate_messages(messages or []))
        except ValueError as err:
            raise ValueError(f"{path} {where}: {err}") from None
    return out


def corpus_docs(files: list[Path], languages: list[str]):
    """(id, text) of curated documents in the wanted languages."""
    import pyarrow.parquet as pq

    for path in files:
        table = pq.read_table(path)
        ids = table.column("id").to_pylist() if "id" in table.column_names else [f"{path.name}:{i}" for i in range(table.num_rows)]
        langs = table.column("language").to_pylist() if "language" in table.column_names else [None] * table.num_rows
        for doc_id, text, lang in zip(ids, table.column("text").to_pylist(), langs):
            if text and (not languages or lang is None or lang in languages):
                yield str(doc_id), text


def clean(messages: list[dict[str, str]], cfg: SFTDataConfig, stats: dict[str, int]) -> list | None:
    """Scrubbed messages, or None when the conversation is dropped (reason counted in `stats`)."""
    from tasks.core.pii import scrub_pii
    from tasks.core.toxicity import is_toxic

    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        stats["dropped_no_assistant"] = stats.get("dropped_no_assistant", 0) + 1
        return None
    if is_toxic("\n".join(m["content"] for m in messages), cfg.max_badword_ratio)[0]:
        stats["dropped_toxic"] = stats.get("dropped_toxic", 0) + 1
        return None
    if not cfg.scrub_pii:
        return messages
    scrubbed = []
    for message in messages:
        text, counts = scrub_pii(message["content"])
        for kind, n in counts.items():
            stats[f"pii_{kind}"] = stats.get(f"pii_{kind}", 0) + n
        scrubbed.append({"role": message["role"], "content": text})
    return scrubbed


def run_sft_data(cfg: SFTDataConfig, shards: ShardSet | None, out: Path) -> ConversationSet:
    t0 = time.time()
    if any(out.iterdir()):  # leftovers of a killed run: rebuilding is cheap
        reset_dir(out)
    sources: list[tuple[str, list[list[dict[str, str]]]]] = []
    if cfg.seed_set:
        sources.append(("seed", read_conversations(SEED_FILE)))
    if cfg.derive_from_corpus:
        files = [shards.dir / f for f in shards.files] if shards is not None else []
        files += [Path(f) for f in cfg.corpus_files]
        derived = []
        for doc_id, text in corpus_docs(files, cfg.languages):
            derived += derive_conversations(doc_id, text, cfg)[: max(0, cfg.max_derived - len(derived))]
        sources.append(("corpus", derived))
    for name in cfg.files:
        sources.append((f"file:{Path(name).name}", read_conversations(Path(name))))
    stats: dict[str, Any] = {"sources": {}}
    seen: set[str] = set()
    split: dict[str, list[str]] = {TRAIN: [], VAL: []}
    for source, conversations in sources:
        kept = 0
        for messages in conversations:
            messages = clean(messages, cfg, stats)
            if messages is None:
                continue
            key = json.dumps(messages, sort_keys=True)
            if key in seen:
                stats["dropped_duplicate"] = stats.get("dropped_duplicate", 0) + 1
                continue
            seen.add(key)
            kept += 1
            name = VAL if unit_hash(cfg.seed, key, "val") < cfg.val_fraction else TRAIN
            split[name].append(json.dumps({"messages": messages, "source": source}, ensure_ascii=False))
        stats["sources"][source] = {"in": len(conversations), "kept": kept}
    if not split[TRAIN]:
        raise ValueError("no SFT conversations left for training: enable sft_data.seed_set, add sft_data.files, "
                         "or give a corpus with headings followed by prose")
    for name, lines in split.items():
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    stats |= {"train": len(split[TRAIN]), "val": len(split[VAL])}
    ref = ConversationSet(path=str(out), files=[TRAIN, VAL], n_train=len(split[TRAIN]), n_val=len(split[VAL]))
    return finish_stage(out, ref, config=cfg, entry=run_sft_data, stats=stats, started=t0)


def load_conversations(data: ConversationSet, name: str = TRAIN) -> list[list[dict[str, str]]]:
    path = data.dir / name
    return [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def file_inputs(cfg: SFTDataConfig) -> list[StageRef]:
    """The seed and user files as stage inputs, so editing one (same name, new content) makes a new stage dir."""
    names = ([str(SEED_FILE)] if cfg.seed_set else []) + list(cfg.files) + list(cfg.corpus_files)
    return [StageRef(path=name, manifest_sha256=file_sha256(Path(name))) for name in names if Path(name).is_file()]


@task(name="sft-data", retries=1)
def sft_data(cfg: SFTDataConfig, shards: ShardSet | None = None) -> ConversationSet:
    out = stage_dir("sft-data", cfg, *([shards] if shards is not None else []), *file_inputs(cfg), entry=run_sft_data)
    return load_done(out, ConversationSet) or run_sft_data(cfg, shards, out)
