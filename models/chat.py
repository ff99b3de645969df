"""The chat template: OpenAI-style `messages` rendered with the tokenizer's role tokens.

One conversation becomes `<|bos|>` followed, per message, by the role token, the content and `<|end|>`:

    <|bos|><|system|>You are terse.<|end|><|user|>Hi<|end|><|assistant|>Hello.<|end|>

A generation prompt ends with `<|assistant|>` and the model answers until it emits `<|end|>`. Role tokens are
inserted by id rather than written into the text, so a user typing "<|assistant|>" in a message cannot forge a
turn: `Tokenizer.encode` reads special-token strings in text as plain bytes. `encode_chat` also returns the
per-token mask SFT trains on: 1 on the tokens of assistant turns (content and closing `<|end|>`), 0 elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ROLES = ("system", "user", "assistant")
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
BOS_TOKEN, END_TOKEN = "<|bos|>", "<|end|>"


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Plain `{"role", "content"}` dicts, or a ValueError naming the bad message and what is allowed.

    Every problem is a ValueError, type mismatches included, so callers map "bad conversation" to one error (a 400).
    """
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")
    out: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be an object with 'role' and 'content', got {type(message).__name__}")  # noqa: TRY004
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role is {role!r}; expected one of {list(ROLES)}")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string (text parts only), got {type(content).__name__}")  # noqa: TRY004
        if role == "system" and i != 0:
            raise ValueError(f"messages[{i}] is a system message; only the first message may be one")
        out.append({"role": role, "content": content})
    return out


def special_id(tokenizer: Any, token: str) -> int:
    idx = tokenizer.token_to_id(token)
    if idx is None:
        raise ValueError(f"tokenizer has no {token} token; it must be trained with models.tokenizer (chat tokens)")
    return int(idx)


def render_chat(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
    """The conversation as template text (for display and logs; use `encode_chat` to get ids)."""
    parts = [BOS_TOKEN]
    for message in validate_messages(messages):
        parts.append(f"{ROLE_TOKENS[message['role']]}{message['content']}{END_TOKEN}")
    if add_generation_prompt:
        parts.append(ROLE_TOKENS["assistant"])
    return "".join(parts)


def encode_content(tokenizer: Any, text: str) -> list[int]:
    """Ids of message text, byte for byte: special-token strings in it stay text (`Tokenizer.encode`)."""
    return tokenizer.encode(text) if text else []


def encode_turns(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """The conversation's ids cut at turn boundaries: `[<|bos|>]`, then one list per message (role token, content,
    `<|end|>`). Context truncation drops whole turns from this, never the middle of one."""
    end_id = special_id(tokenizer, END_TOKEN)
    turns = [[special_id(tokenizer, BOS_TOKEN)]]
    for message in validate_messages(messages):
        role_id = special_id(tokenizer, ROLE_TOKENS[message["role"]])
        turns.append([role_id] + encode_content(tokenizer, message["content"]) + [end_id])
    return turns


def encode_chat(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
) -> tuple[list[int], list[int]]:
    """(ids, assistant_mask) of the rendered conversation; mask is 1 on assistant content and its `<|end|>`."""
    turns = encode_turns(tokenizer, messages)
    ids, mask = list(turns[0]), [0]
    for message, turn in zip(validate_messages(messages), turns[1:], strict=True):
        trained = 1 if message["role"] == "assistant" else 0
        ids += turn
        mask += [0] + [trained] * (len(turn) - 1)
    if add_generation_prompt:
        ids.append(special_id(tokenizer, ROLE_TOKENS["assistant"]))
        mask.append(0)
    return ids, mask
