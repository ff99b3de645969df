"""The terminal chat (`lmforge chat`): a conversation with a `ChatEngine` whose answers stream as they are sampled.

The engine is the server's (`serve.load_engine`); this module only owns the read-answer loop and its commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def echo(text: str) -> None:
    print(text, end="", flush=True)


def chat_repl(engine: Any, read: Callable[[str], str] = input, write: Callable[[str], None] = echo,
              system: str | None = None, max_tokens: int = 128, temperature: float = 0.7) -> list[dict[str, str]]:
    """A terminal conversation (`lmforge chat`): answers stream as they are sampled; `/reset` clears, `/exit` ends."""
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if line in {"/exit", "/quit"}:
            break
        if line == "/reset":
            history = history[:1] if system else []
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        parts = []
        for delta, _, _, _ in engine.stream(history, max_tokens=max_tokens, temperature=temperature):
            parts.append(delta)
            write(delta)
        write("\n")
        history.append({"role": "assistant", "content": "".join(parts).strip()})
    return history
