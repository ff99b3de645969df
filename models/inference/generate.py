"""The generation engine: chat template, context budget, sampling, stop strings and UTF-8-safe streaming deltas.

One engine serves every path that generates text from a checkpoint: `lmforge serve`, `lmforge chat`, the MLflow
pyfunc (`models.packaging.pyfunc`) and the fine-tuning stages' sample answers. It needs only `models/` (the checkpoint
format lives in `models.weights.checkpoint`), so a registered model carries no stage code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.text.chat import encode_turns

if TYPE_CHECKING:
    from models.inference.quantize import Quantize

DEFAULT_MAX_TOKENS = 128
Delta = tuple[str, "str | None", int, int]  # (text, finish_reason or None, prompt tokens, completion tokens)


def fit_context(turns: list[list[int]], keep_first: int, budget: int) -> list[int]:
    """Left-truncate a conversation cut into turns to at most `budget` tokens: the first `keep_first` turns
    (`<|bos|>`, the system message) and the last one always stay, whole turns in between are dropped oldest first;
    only a last turn longer than the whole budget is cut, from its start."""
    head, middle, last = turns[:keep_first], turns[keep_first:-1], turns[-1]
    used = sum(map(len, head))
    if used >= budget:
        raise ValueError(f"the system message takes {used} of the {budget} prompt tokens the model's context leaves; "
                         "shorten it or lower max_tokens")
    room = budget - used
    if len(last) >= room:
        return [t for turn in head for t in turn] + last[-room:]
    kept: list[list[int]] = []
    room -= len(last)
    for turn in reversed(middle):
        if len(turn) > room:
            break
        kept.insert(0, turn)
        room -= len(turn)
    return [t for turn in head + kept + [last] for t in turn]


class Detokenizer:
    """Incremental UTF-8-safe decoding: each token costs a decode of a few tokens, not of the whole answer.

    Byte-level BPE may split a character across tokens; text is taken only once it decodes without U+FFFD (the
    offsets scheme of vLLM / HF's TextStreamer)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.ids, self.prefix, self.read, self.text = tokenizer, [], 0, 0, ""

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token: int) -> str:
        """Append a token; returns the text it completes (may be empty while a character is still partial)."""
        self.ids.append(token)
        before = self.decode(self.ids[self.prefix : self.read])
        after = self.decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            delta = after[len(before) :]
            self.prefix, self.read, self.text = self.read, len(self.ids), self.text + delta
            return delta
        return ""


class ChatEngine:
    """Chat generation over a loaded model: template, context budget, sampling, stop conditions, UTF-8-safe deltas.

    Decoding is incremental (`models.decoding.decoders`): the prompt runs through the model once, then each new token
    costs one position. When a KV cache fills up mid-answer, decoding restarts on the conversation refitted to half the
    context (amortised, still a constant cost per token)."""

    def __init__(self, model: Any, tokenizer: Any, sidecar: dict[str, Any], name: str = "lmforge",
                 version: str | None = None) -> None:
        """`name` is what clients call the model (`lmforge@champion`); `version` its registry version, if any."""
        self.model, self.tokenizer, self.sidecar, self.name, self.version = model, tokenizer, sidecar, name, version
        template = tokenizer.chat_template  # the model's own: lmforge's, or an imported model's (ChatML, …)
        self.stop_ids = {template.end_of_turn_id, tokenizer.eos_id, tokenizer.bos_id}
        self.context = int(getattr(model.config, "seq_len", 256))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path | str, device: str = "cpu", name: str = "lmforge",
                        version: str | None = None, quantize: Quantize = "none") -> ChatEngine:
        """`device` "auto" = CUDA when present, in bfloat16 where the GPU supports it; else CPU in float32, or with
        `quantize="int8"` int8 linear weights (`models.inference.quantize`: faster decoding on CPU, at a measured
        cost)."""
        import torch

        from models.hardware.devices import resolve_device
        from models.weights.checkpoint import load_model

        resolved = resolve_device(device)
        model, tokenizer, sidecar = load_model(checkpoint_dir, device=str(resolved))
        if resolved.type == "cuda" and torch.cuda.is_bf16_supported():
            model = model.to(torch.bfloat16)
        if quantize == "int8":
            from models.inference.quantize import quantize_linear_int8

            model = quantize_linear_int8(model)
        return cls(model, tokenizer, sidecar, name, version)

    def turns(self, messages: list[dict[str, Any]]) -> tuple[list[list[int]], int]:
        """(the conversation's turns ending with the generation prompt, how many leading turns always stay)."""
        turns = encode_turns(self.tokenizer, messages)
        turns[-1] = turns[-1] + self.tokenizer.chat_template.generation_prompt(messages)
        keep = 2 if messages[0].get("role") == "system" and len(turns) > 2 else 1
        return turns, keep

    def prompt_budget(self, max_tokens: int) -> int:
        return max(1, self.context - min(max_tokens, self.context // 2))

    def prompt_ids(self, messages: list[dict[str, Any]], max_tokens: int) -> list[int]:
        """The prompt, left-truncated to leave room for the answer; a ValueError names what is wrong with it."""
        turns, keep = self.turns(messages)
        return fit_context(turns, keep, self.prompt_budget(max_tokens))

    def sequence(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.7,
        top_k: int | None = 50,
        top_p: float | None = None,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> Sequence:
        """One answer to generate, for a caller that runs the model itself (the server's batching worker)."""
        turns, keep = self.turns(messages)
        return Sequence(self, turns, keep, max_tokens, temperature, top_k, top_p, stop, seed)

    def stream(
        self, messages: list[dict[str, Any]], cancelled: Callable[[], bool] | None = None, **sampling: Any
    ) -> Iterator[Delta]:
        """Yield (text delta, finish_reason or None, prompt tokens, completion tokens) as tokens are sampled;
        `sampling` as `sequence` takes it. `cancelled` is polled before each token; when it turns true generation
        stops (finish_reason "cancelled")."""
        return self.run(self.sequence(messages, **sampling), cancelled)

    def run(self, seq: Sequence, cancelled: Callable[[], bool] | None = None) -> Iterator[Delta]:
        """Decode `seq` alone to its end (what `stream` does once the request is a `Sequence`): the one decode
        loop (`models.decoding.decoders.decode`) with one slot, handing on each step's deltas before the next pass."""
        from models.decoding.decoders import decode, decoder_for

        alone = Alone(seq, cancelled)
        for _ in decode(decoder_for(self.model, self.context), alone):
            yield from alone.take()
        yield from alone.take()

    def complete(self, messages: list[dict[str, Any]], **sampling: Any) -> tuple[str, str, int, int]:
        """(answer, finish_reason, prompt tokens, completion tokens)."""
        parts, finish, n_prompt, n_out = [], "length", 0, 0
        for delta, finish_reason, n_prompt, n_out in self.stream(messages, **sampling):
            parts.append(delta)
            finish = finish_reason or finish
        return "".join(parts).strip(), finish, n_prompt, n_out


class Sequence:
    """One answer being generated, one sampled token at a time: sampling (with its own seeded generator), stop
    tokens and strings, `max_tokens`, UTF-8-safe deltas. Whoever runs the model feeds it logits: `sample(logits)`,
    then `accept(token)` yields the deltas it completes; `finish` is set once the answer is over, `final()` is the
    last delta."""

    def __init__(self, engine: ChatEngine, turns: list[list[int]], keep: int, max_tokens: int, temperature: float,
                 top_k: int | None, top_p: float | None, stop: list[str] | None, seed: int | None) -> None:
        self.engine, self.turns, self.keep, self.max_tokens = engine, turns, keep, max_tokens
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.prompt = fit_context(turns, keep, engine.prompt_budget(max_tokens))
        self.stop = [s for s in stop or [] if s]
        self.seed, self.generator = seed, None
        self.detok, self.emitted, self.finish = Detokenizer(engine.tokenizer), "", None

    @property
    def tokens(self) -> list[int]:
        return self.detok.ids

    def sample(self, logits: Any) -> int:
        """The next token from the logits (V,) the model gave for this sequence."""
        import torch

        from models.decoding.sampling import sample_next

        if self.seed is not None and self.generator is None:
            self.generator = torch.Generator(device=logits.device)
            self.generator.manual_seed(self.seed)
        return int(sample_next(logits[None], self.temperature, self.top_k, self.top_p, self.generator)[0, 0])

    def cancel(self) -> None:
        self.finish = "cancelled"

    def advance(self, logits: Any, cancelled: bool = False) -> Iterator[Delta]:
        """One decoding step: sample from the logits (V,) and accept the token (or cancel), then the last delta
        once the answer is over; `next_token` is then what the model runs next."""
        if cancelled:
            self.cancel()
        else:
            yield from self.accept(self.sample(logits))
        if self.finish is not None:
            yield self.final()

    @property
    def next_token(self) -> int | None:
        """The token to feed after `advance`; None once the answer is over."""
        return None if self.finish is not None else self.tokens[-1]

    def accept(self, token: int) -> Iterator[Delta]:
        """Take a sampled token: yields the text it makes safe to send; sets `finish` when the answer ends."""
        if token in self.engine.stop_ids:
            self.finish = "stop"
            return
        grown = self.detok.add(token)
        text = self.detok.text
        n = len(self.detok.ids)
        cut = min((i for s in self.stop if (i := text.find(s, max(0, len(text) - len(grown) - len(s)))) >= 0),
                  default=-1)
        if cut >= 0:
            self.detok.text, self.finish = text[:cut], "stop"
            return
        safe = held_back(text, self.stop)
        if safe > len(self.emitted):
            delta, self.emitted = text[len(self.emitted) : safe], text[:safe]
            yield delta, None, len(self.prompt), n
        if n >= self.max_tokens:
            self.finish = "length"

    def final(self) -> Delta:
        text = self.detok.text
        rest = text[len(self.emitted) :] if text.startswith(self.emitted) else ""
        return rest, self.finish or "length", len(self.prompt), len(self.detok.ids)

    def refit(self) -> list[int]:
        """The conversation with the answer so far, refitted to half the context (a full KV cache restarts on it)."""
        context = self.engine.context
        return fit_context(self.turns[:-1] + [self.turns[-1] + self.detok.ids], self.keep, context // 2)


class Alone:
    """One `Sequence` as the decode loop's streams (`models.decoding.decoders.Streams`), its deltas kept for `take`."""

    def __init__(self, seq: Sequence, cancelled: Callable[[], bool] | None) -> None:
        self.seq, self.cancelled, self.waiting, self.deltas = seq, cancelled, True, []

    def join(self, slot: int) -> list[int] | None:
        waiting, self.waiting = self.waiting, False
        return self.seq.prompt if waiting else None

    def advance(self, logits: dict[int, Any]) -> dict[int, int | None]:
        ((slot, row),) = logits.items()
        self.deltas += self.seq.advance(row, self.cancelled is not None and self.cancelled())
        return {slot: self.seq.next_token}

    def refit(self, slot: int) -> list[int]:
        return self.seq.refit()

    def take(self) -> list[Delta]:
        deltas, self.deltas = self.deltas, []
        return deltas


def held_back(text: str, stop: list[str]) -> int:
    """How much of `text` is safe to send: not a half-decoded multi-byte character, not the start of a stop string."""
    safe = len(text.rstrip("\ufffd"))
    for s in stop:
        for k in range(min(len(s) - 1, safe), 0, -1):
            if text.endswith(s[:k], 0, safe):
                safe -= k
                break
    return safe
