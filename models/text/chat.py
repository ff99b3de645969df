"""Chat templates: OpenAI-style `messages` rendered with a model's own Jinja chat template, content kept as text.

Every tokenizer carries a template (`Tokenizer.chat_template`): an imported model its own (SmolLM2's ChatML, from its
tokenizer config or GGUF metadata; Llama 3's headers; …), a model trained from scratch lmforge's, which renders

    <|bos|><|system|>You are terse.<|end|><|user|>Hi<|end|><|assistant|>Hello.<|end|>

A template is Jinja as in Hugging Face `tokenizer_config.json`, rendered the way `transformers` renders it (sandboxed,
`trim_blocks`, `lstrip_blocks`), so for ordinary messages the ids equal `tokenizer.apply_chat_template`. Message
content never turns into control tokens: the template is rendered with a placeholder for each message's content, the
template's own text is encoded with special tokens recognised, and each content is encoded as plain text
(`Tokenizer.encode`), so a user typing "<|im_start|>" or "<|assistant|>" in a message cannot forge a turn.
`ChatTemplate.encode` also returns the mask SFT trains on: 1 on assistant content and the end-of-turn token that
closes it, 0 elsewhere. The end-of-turn token is read off the template itself (the first special token after an
assistant message: `<|end|>`, `<|im_end|>`, `<|eot_id|>` …), and it is where generation stops.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

ROLES = ("system", "user", "assistant")
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
BOS_TOKEN, END_TOKEN = "<|bos|>", "<|end|>"
# lmforge's own template (models trained from scratch); `export` writes it as the HF tokenizer's chat_template.
LMFORGE_TEMPLATE = (
    "{{ '" + BOS_TOKEN + "' }}{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '"
    + END_TOKEN + "' }}{% endfor %}{% if add_generation_prompt %}{{ '" + ROLE_TOKENS["assistant"] + "' }}{% endif %}"
)
# Private-use code points around a message index stand in for its content while the template renders.
_SLOT = re.compile("\ue000(\\d+)\ue001")


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


def _compile(source: str):
    """The template compiled as `transformers` compiles chat templates, so both render the same text."""
    import json

    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(f"chat template: {message}")

    def strftime_now(fmt: str) -> str:
        import datetime

        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    return env.from_string(source)


class ChatTemplate:
    """A Jinja chat template bound to a tokenizer: conversations to text, ids, per-turn ids and the SFT mask.

    `tokenizer` needs `encode` (content, special-token strings as text), `encode_template` (template text, special
    tokens recognised), `special_ids` and the token strings the template may name (`bos_token`, `eos_token`)."""

    def __init__(self, source: str, tokenizer: Any, variables: Mapping[str, str] | None = None) -> None:
        self.source, self.tokenizer = source, tokenizer
        self.variables = dict(variables or {})  # bos_token, eos_token, pad_token: what templates may print
        self._template = _compile(source)

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The conversation as the template's text (for display and logs; `encode` gives the ids)."""
        return self._render(validate_messages(messages), add_generation_prompt)

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, tools=None,
                                     documents=None, **self.variables)

    def _segments(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[str | int]:
        """The rendering cut into template text (str) and message indices (int) where each content goes."""
        placeholders = [{**m, "content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
        parts = _SLOT.split(self._render(placeholders, add_generation_prompt))
        return [int(p) if k % 2 else p for k, p in enumerate(parts) if k % 2 or p]

    def encode(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> tuple[list[int], list[int]]:
        """(ids, assistant_mask): the mask is 1 on assistant content and the end-of-turn token closing it."""
        messages = validate_messages(messages)
        ids: list[int] = []
        mask: list[int] = []
        closing = False  # inside the template text right after an assistant message, until its end-of-turn token
        for part in self._segments(messages, add_generation_prompt):
            if isinstance(part, int):
                content = self.tokenizer.encode(messages[part]["content"]) if messages[part]["content"] else []
                trained = messages[part]["role"] == "assistant"
                ids += content
                mask += [int(trained)] * len(content)
                closing = trained
                continue
            for token in self.tokenizer.encode_template(part):
                ids.append(token)
                mask.append(int(closing))
                if closing and token == self.end_of_turn_id:
                    closing = False
            closing = False
        return ids, mask

    def turns(self, messages: Sequence[Mapping[str, Any]]) -> list[list[int]]:
        """The conversation's ids (no generation prompt) cut at message boundaries: what the template puts before
        any message (`<|bos|>` for lmforge's), then one list per message. Context truncation drops whole turns.
        A template whose rendering of a prefix is not a prefix of the whole gives the preamble and one turn."""
        messages = validate_messages(messages)
        cuts = [self._prefix_ids(messages[:k]) for k in range(len(messages) + 1)]
        if not all(cuts[k + 1][: len(cuts[k])] == cuts[k] for k in range(len(messages))):
            return [[], cuts[-1]]
        return [cuts[0]] + [cuts[k + 1][len(cuts[k]) :] for k in range(len(messages))]

    def _prefix_ids(self, messages: list[dict[str, str]]) -> list[int]:
        if not messages:
            try:
                return [t for p in self._segments([], False) for t in self.tokenizer.encode_template(p)]
            except (ValueError, LookupError, TypeError):  # templates that index messages[0] have no preamble
                return []
        return self.encode(messages, add_generation_prompt=False)[0]

    def generation_prompt(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """The ids the template appends to open the assistant's answer (`<|assistant|>`, `<|im_start|>assistant\\n`)."""
        with_prompt = self.encode(messages, add_generation_prompt=True)[0]
        without = self.encode(messages, add_generation_prompt=False)[0]
        if with_prompt[: len(without)] != without:
            raise ValueError("chat template: the generation prompt does not extend the conversation it closes")
        return with_prompt[len(without) :]

    @cached_property
    def end_of_turn_id(self) -> int:
        """The first special token the template writes after an assistant message's content; eos where none."""
        probe = [{"role": "user", "content": "?"}, {"role": "assistant", "content": "!"}]
        parts = self._segments(validate_messages(probe), add_generation_prompt=False)
        after = parts[parts.index(1) + 1 :] if 1 in parts else []
        special = self.tokenizer.special_ids
        for part in after:
            if isinstance(part, str):
                for token in self.tokenizer.encode_template(part):
                    if token in special:
                        return token
        return self.tokenizer.eos_id


def render_chat(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
    """lmforge's template as text (a scratch model's conversations; `Tokenizer.chat_template.render` in general)."""
    return _compile(LMFORGE_TEMPLATE).render(messages=validate_messages(messages),
                                             add_generation_prompt=add_generation_prompt)


def encode_turns(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """`tokenizer.chat_template.turns`: the conversation's ids cut at message boundaries."""
    return tokenizer.chat_template.turns(messages)


def encode_chat(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
) -> tuple[list[int], list[int]]:
    """(ids, assistant_mask) of the conversation in the tokenizer's own chat template."""
    return tokenizer.chat_template.encode(messages, add_generation_prompt)
