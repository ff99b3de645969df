"""Incremental decoding (`models.decoding.decoders`) and the chat engine's context handling
(`models.inference.generate`): cached decoding picks exactly the tokens a full recompute picks, each step runs one new
position, and left truncation keeps `<|bos|>`, the system message and whole turns."""

from __future__ import annotations

import pytest
import torch
from lm_fixtures import tiny_tokenizer

from models.architectures.registry import ModelConfig, build_model
from models.decoding.decoders import Decoder, KVCacheDecoder, RecurrentDecoder, WindowDecoder, decoder_for
from models.inference.generate import ChatEngine, fit_context
from models.text.chat import encode_turns

ARCHS = {"gpt": KVCacheDecoder, "gpt2": KVCacheDecoder, "rnn": RecurrentDecoder, "gcnn": WindowDecoder}


def random_model(arch: str, vocab_size: int = 97, seq_len: int = 64, **overrides):
    torch.manual_seed(1)
    shape = {"n_layer": 2, "n_embd": 32, "n_head": 4, "n_kv_head": 2, **overrides}
    cfg = ModelConfig(arch=arch, seq_len=seq_len, vocab_size=vocab_size, **shape)
    model = build_model(cfg)
    with torch.no_grad():  # zero-initialised output projections would make every block the identity
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


class FullRecompute(WindowDecoder):
    """Every pass runs each sequence's whole history through the model: the reference the incremental decoders
    must match (its cost grows with the context, so no model decodes this way)."""

    def window(self, slot: int) -> list[int]:
        return self.ids[slot]


@torch.no_grad()
def feed(decoder: Decoder, ids: list[int]) -> torch.Tensor:
    """One sequence, in slot 0: append ids (its prompt, when it is empty); the logits (V,) of the next token."""
    if decoder.lengths[0] == 0:
        return decoder.prefill(0, ids)
    return decoder.forward([0], decoder.tensor([ids]))[0]


def greedy(decoder: Decoder, prompt: list[int], n: int) -> list[int]:
    logits, out = feed(decoder, prompt), []
    for _ in range(n):
        out.append(int(logits.argmax()))
        logits = feed(decoder, out[-1:])
    return out


@pytest.mark.parametrize("arch", list(ARCHS))
def test_cached_decoding_equals_full_recompute_token_by_token(arch):
    model = random_model(arch)
    prompt = torch.randint(0, 97, (23,), generator=torch.Generator().manual_seed(7)).tolist()
    cached = decoder_for(model, context=64)
    assert type(cached) is ARCHS[arch]
    recomputed = FullRecompute(model)  # the whole sequence through the model for every token
    assert greedy(cached, prompt, 40) == greedy(recomputed, prompt, 40)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_each_step_runs_a_fixed_number_of_positions(arch):
    model = random_model(arch)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0].size(1)))
    greedy(decoder_for(model, context=64), list(range(30)), 20)
    steps = seen[1:]  # after the prompt
    expected = model.receptive_field if arch == "gcnn" else 1
    assert len(steps) == 20 and set(steps) == {expected}


def test_gqa_cache_matches_forward_logits():
    model = random_model("gpt", n_kv_head=1)
    ids = list(range(5, 35))
    decoder = decoder_for(model, context=64)
    feed(decoder, ids[:10])
    stepped = torch.stack([feed(decoder, [t]) for t in ids[10:]])
    full, _ = model(torch.tensor([ids]))
    torch.testing.assert_close(stepped, full[0, 10:], atol=1e-4, rtol=1e-4)


def test_fit_context_keeps_bos_system_and_whole_turns():
    turns = [[0], [1, 1, 1], [2, 2, 2, 2], [3, 3], [4, 4, 4], [5, 5, 9]]
    assert fit_context(turns, 2, 100) == [t for turn in turns for t in turn]
    assert fit_context(turns, 2, 12) == [0, 1, 1, 1, 3, 3, 4, 4, 4, 5, 5, 9]  # [2,2,2,2] goes whole
    assert fit_context(turns, 2, 10) == [0, 1, 1, 1, 4, 4, 4, 5, 5, 9]  # no half of [3, 3] squeezed in
    assert fit_context(turns, 2, 6) == [0, 1, 1, 1, 5, 9]  # only the newest turn is ever cut, from its start
    with pytest.raises(ValueError, match="system message takes 4 of the 4"):
        fit_context(turns, 2, 4)


def test_engine_truncates_long_conversations_by_whole_turns():
    tok = tiny_tokenizer()
    engine = ChatEngine(random_model("gpt", vocab_size=tok.vocab_size), tok, {})
    messages = [{"role": "system", "content": "Be terse."}]
    for i in range(12):
        messages += [{"role": "user", "content": f"Question {i} about Debian?"},
                     {"role": "assistant", "content": f"Answer {i}: free software."}]
    messages.append({"role": "user", "content": "Last question?"})
    prompt = engine.prompt_ids(messages, max_tokens=16)
    turns, keep = engine.turns(messages)
    assert keep == 2 and len(prompt) <= engine.context - 16
    assert prompt[: len(turns[0]) + len(turns[1])] == turns[0] + turns[1]  # <|bos|> and the system message
    assert prompt[-len(turns[-1]) :] == turns[-1]  # the question, ending with <|assistant|>
    body = prompt[len(turns[0]) + len(turns[1]) : -len(turns[-1])]
    kept = [t for t in turns[2:-1] if t]
    assert any(body == [x for turn in kept[i:] for x in turn] for i in range(len(kept)))  # a suffix of whole turns
    assert encode_turns(tok, messages)[0] == [tok.token_to_id("<|bos|>")]


def test_engine_answers_past_a_full_cache_and_seed_repeats():
    tok = tiny_tokenizer()
    engine = ChatEngine(random_model("gpt", vocab_size=tok.vocab_size, seq_len=32), tok, {})
    engine.stop_ids = set()  # a random model may say <|end|> early; here it must fill the cache
    hi = [{"role": "user", "content": "Hi"}]
    answer, finish, _, n_out = engine.complete(hi, max_tokens=80, temperature=0.9, seed=3)
    assert (finish, n_out) == ("length", 80)
    assert engine.complete(hi, max_tokens=80, temperature=0.9, seed=3)[0] == answer


@pytest.mark.parametrize("arch", ["gpt", "gpt2", "rnn"])
def test_batched_slots_decode_exactly_what_each_sequence_decodes_alone(arch):
    from models.decoding.decoders import batchable

    model = random_model(arch)
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (3, 17, 30)]
    alone = [greedy(decoder_for(model, context=64), p, 12) for p in prompts]
    assert batchable(model) and not batchable(random_model("gcnn"))
    batch, out = decoder_for(model, context=64, slots=4), {}
    logits = {slot: batch.prefill(slot, p) for slot, p in zip((2, 0), prompts[:2], strict=True)}
    for step in range(12):
        if step == 4:  # a third sequence joins mid-flight, in a free slot
            logits[3] = batch.prefill(3, prompts[2])
        tokens = {slot: int(row.argmax()) for slot, row in logits.items()}
        for slot, token in tokens.items():
            out.setdefault(slot, []).append(token)
        logits = batch.step(tokens)
    for slot, token in {slot: int(row.argmax()) for slot, row in logits.items()}.items():
        out[slot].append(token)
    assert out[2][:12] == alone[0] and out[0][:12] == alone[1]
    assert len(out[3]) == 9 and out[3] == alone[2][:9]  # joined at step 4


class Greedy:
    """Prompts waiting in order, each decoded greedily for `n` tokens: the decode loop's streams in these tests."""

    def __init__(self, prompts: list[list[int]], n: int, context: int = 64):
        self.waiting, self.n, self.context = list(enumerate(prompts)), n, context
        self.slot_of: dict[int, int] = {}
        self.out: dict[int, list[int]] = {}
        self.ids: dict[int, list[int]] = {}

    def join(self, slot: int) -> list[int] | None:
        if not self.waiting:
            return None
        i, prompt = self.waiting.pop(0)
        self.slot_of[slot], self.out[i], self.ids[i] = i, [], list(prompt)
        return prompt

    def advance(self, logits: dict[int, torch.Tensor]) -> dict[int, int | None]:
        tokens = {}
        for slot, row in logits.items():
            i = self.slot_of[slot]
            self.out[i].append(int(row.argmax()))
            self.ids[i].append(self.out[i][-1])
            tokens[slot] = self.out[i][-1] if len(self.out[i]) < self.n else None
        return tokens

    def refit(self, slot: int) -> list[int]:
        return self.ids[self.slot_of[slot]][-(self.context // 2) :]


@pytest.mark.parametrize("arch", ["gpt", "gpt2", "rnn"])
def test_the_decode_loop_batches_joins_and_leaves_as_if_each_ran_alone(arch):
    from models.decoding.decoders import decode

    model = random_model(arch)
    g = torch.Generator().manual_seed(9)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (5, 21, 9, 14)]
    alone = [greedy(decoder_for(model, context=64), p, 10) for p in prompts]
    passes: list[int] = []
    model.register_forward_pre_hook(lambda _, args: passes.append(args[0].size(0)))
    streams = Greedy(prompts, 10)
    for _ in decode(decoder_for(model, context=64, slots=2), streams):  # 4 prompts through 2 slots
        pass
    assert [streams.out[i] for i in range(4)] == alone
    assert max(passes) == 2  # two sequences advanced in one pass


def test_a_full_cache_restarts_on_the_refitted_context_as_a_recompute_of_it_would():
    from models.decoding.decoders import decode

    model = random_model("gpt", seq_len=16)
    prompt = list(range(3, 13))
    streams = Greedy([prompt], 40, context=16)
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda _, args: sizes.append(args[0].size(1)))
    for _ in decode(decoder_for(model, context=16), streams):
        pass
    restarts = [n for n in sizes if n > 1]  # the prompt, then each restart (a step runs one position)
    # the same rule by full recompute: the model sees the tokens since the last restart, which began on the
    # most recent half of the context once the cache (16 positions) was full
    ids, seen, expected = list(prompt), list(prompt), []
    while len(expected) < 40:
        logits, _ = model(torch.tensor([seen]))
        expected.append(int(logits[0, -1].argmax()))
        ids.append(expected[-1])
        seen = ids[-8:] if len(seen) == 16 else seen + [expected[-1]]
    assert streams.out[0] == expected
    assert restarts[0] == 10 and set(restarts[1:]) == {8} and len(restarts) > 2


def test_a_model_without_a_declared_decoding_is_refused_clearly():
    from models.decoding.decoders import batchable

    with pytest.raises(TypeError, match="declares no `decoding"):
        batchable(torch.nn.Linear(2, 2))


def test_generate_past_the_rope_table_restarts_every_row_on_its_last_half():
    model = random_model("gpt", seq_len=8)  # a RoPE table (and so a cache) of 32 positions
    prompt = torch.randint(0, 97, (2, 3), generator=torch.Generator().manual_seed(2))
    out = model.generate(prompt, 60, temperature=0)
    ids, seen = prompt, prompt
    for _ in range(60):  # the rule by full recompute: a full cache (32 fed) restarts on the last 16 tokens
        logits, _ = model(seen)
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
        seen = ids[:, -16:] if seen.size(1) == 32 else torch.cat([seen, nxt], dim=1)
    assert torch.equal(out, ids)
