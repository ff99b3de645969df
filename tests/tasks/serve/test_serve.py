"""The OpenAI-compatible chat server in process: answers, SSE streaming with usage, every malformed request a 4xx
with an OpenAI error object, API key, PII output filter, terminal chat. (The concurrency tests run a real server
process: test_server_process.py.)"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from lm_fixtures import ScriptedLM, tiny_gpt, tiny_tokenizer

from models.inference.generate import ChatEngine
from tasks.serve.serve import ServeConfig, build_app

HI = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def api(tok):
    app = build_app(ChatEngine(tiny_gpt(tok.vocab_size), tok, {}, name="lmforge@champion"), ServeConfig(), api_key="")
    with TestClient(app) as client:  # runs the lifespan: the generation worker
        yield client


def sse_chunks(text: str) -> list[dict]:
    lines = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_chat_completion(api):
    reply = api.post("/v1/chat/completions", json=HI)
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "chat.completion" and body["model"] == "lmforge@champion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}
    assert body["usage"]["completion_tokens"] <= 5


def test_streamed_chat_matches_the_plain_answer(api):
    plain = api.post("/v1/chat/completions", json=HI).json()["choices"][0]["message"]["content"]
    with api.stream("POST", "/v1/chat/completions", json={**HI, "stream": True}) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        chunks = sse_chunks(reply.read().decode())
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip() == plain


def test_models_lists_the_served_alias(api):
    assert api.get("/v1/models").json()["data"][0]["id"] == "lmforge@champion"


def test_the_chat_page_and_its_script_are_served_under_a_strict_policy(api):
    """The page itself is tested in Chromium (test_chat_page.py); here: what the server answers at / and /chat.js."""
    page, script = api.get("/"), api.get("/chat.js")
    assert page.headers["content-type"].startswith("text/html") and '<script src="/chat.js">' in page.text
    assert script.headers["content-type"].startswith("text/javascript") and "/v1/chat/completions" in script.text
    assert "script-src 'self';" in page.headers["content-security-policy"]
    assert "innerHTML" not in script.text  # model text goes in as textContent only
    assert api.get("/health").json()["version"] is None  # an engine loaded from a checkpoint, not the registry


def user(content) -> dict:
    return {"role": "user", "content": content}


MALFORMED = {
    "not JSON": (b"{not json", 400, "not valid JSON"),
    "not UTF-8": (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', 400, "not valid UTF-8"),
    "NaN literal": (b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 400, "NaN is not a JSON"),
    "deeply nested": (b"[" * 60000 + b"]" * 60000, 413, "limit is 65536"),
    "nested under the limit": (b"[" * 30000 + b"]" * 30000, 400, "nested too deeply"),
    "not an object": (b"[1, 2]", 400, "must be a JSON object"),
    "no messages": ({"messages": []}, 400, "messages"),
    "unknown role": ({"messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
    "tool role": ({"messages": [{"role": "tool", "content": "x"}]}, 400, "role"),
    "system after user": ({"messages": [user("Hi"), {"role": "system", "content": "Be terse."}]}, 400,
                          "system message after the conversation started"),
    "empty content": ({"messages": [user("")]}, 400, "messages[0].content is empty"),
    "missing content": ({"messages": [{"role": "user"}]}, 400, "messages[0].content is empty"),
    "empty parts": ({"messages": [user([])]}, 400, "messages[0].content is empty"),
    "image part": ({"messages": [user([{"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}}])]}, 400,
                   "messages.0.content"),
    "lone surrogate": (b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}', 400, "unpaired UTF-16 surrogate"),
    "unknown field": ({**HI, "temprature": 0.5}, 400, "Unrecognized request argument supplied: temprature"),
    "unknown message field": ({"messages": [{**user("x"), "mood": "happy"}]}, 400, "messages.0.mood"),
    "n=2": ({**HI, "n": 2}, 400, "only n=1"),
    "tools": ({**HI, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools are not supported"),
    "logprobs": ({**HI, "logprobs": True}, 400, "logprobs"),
    "stream_options without stream": ({**HI, "stream_options": {"include_usage": True}}, 400, "only allowed when"),
    "too many stops": ({**HI, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    "max_tokens over limit": ({**HI, "max_tokens": 100000}, 400, "max_tokens 100000 exceeds"),
    "max_tokens zero": ({**HI, "max_tokens": 0}, 400, "max_tokens"),
    "temperature": ({**HI, "temperature": 9}, 400, "temperature"),
    "top_p": ({**HI, "top_p": 0}, 400, "top_p"),
    "seed out of range": ({**HI, "seed": 2**64}, 400, "seed"),
    "too many messages": ({"messages": [user("x"), {"role": "assistant", "content": "y"}] * 33}, 400,
                          "66 messages; the limit is 64"),
    "huge body": ({"messages": [user("x" * 70000)]}, 413, "limit is 65536"),
    "system prompt longer than the context": ({"messages": [{"role": "system", "content": "word " * 2000}, user("Hi")]},
                                              400, "system message takes"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_each_malformed_request_gets_its_4xx_with_an_openai_error(api, case):
    body, status, needle = MALFORMED[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = api.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert reply.status_code == status, reply.text
    err = reply.json()["error"]
    assert needle in err["message"] and err["type"] == "invalid_request_error" and err["code"] == status


def test_unknown_routes_and_methods_answer_in_openai_shape(api):
    assert api.get("/v1/nothing").json()["error"]["code"] == 404
    assert api.get("/v1/chat/completions").json()["error"]["code"] == 405


def test_openai_request_options(api):
    parts = {"messages": [{"role": "developer", "content": "Be terse."},
                          user([{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}])],
             "max_completion_tokens": 6, "temperature": 1.0, "top_p": 0.9, "seed": 11, "n": 1, "user": "u1",
             "stop": "\n", "frequency_penalty": 0, "response_format": {"type": "text"}}
    first = api.post("/v1/chat/completions", json=parts)
    assert first.status_code == 200, first.text
    assert first.json()["usage"]["completion_tokens"] <= 6
    again = api.post("/v1/chat/completions", json=parts).json()
    assert again["choices"][0]["message"] == first.json()["choices"][0]["message"]  # same seed, same answer


def test_stream_usage_arrives_in_a_last_chunk(api):
    with api.stream("POST", "/v1/chat/completions",
                    json={**HI, "stream": True, "stream_options": {"include_usage": True}}) as reply:
        chunks = sse_chunks(reply.read().decode())
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 5
    assert chunks[-1]["usage"]["total_tokens"] == sum(chunks[-1]["usage"][k] for k in ("prompt_tokens",
                                                                                     "completion_tokens"))


def test_api_key_is_required_when_set(tok):
    engine = ChatEngine(tiny_gpt(tok.vocab_size), tok, {})
    with TestClient(build_app(engine, ServeConfig(), api_key="s3cret")) as client:
        check_key(client)


def check_key(client):
    missing = client.post("/v1/chat/completions", json=HI)
    assert missing.status_code == 401 and "API key" in missing.json()["error"]["message"]
    assert client.post("/v1/chat/completions", json=HI, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/v1/chat/completions", json=HI, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/health").status_code == 200  # liveness probes need no key


def test_pii_is_filtered_from_plain_and_streamed_answers(tok):
    leak = "Mail jane.doe@example.com or call +44 20 7946 0958 today."
    script = tok.encode(leak) + [tok.token_to_id("<|end|>")]
    request = {**HI, "max_tokens": 200}
    with TestClient(build_app(ChatEngine(ScriptedLM(script), tok, {}), ServeConfig(), api_key="")) as client:
        plain = client.post("/v1/chat/completions", json=request).json()["choices"][0]["message"]["content"]
        with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as reply:
            chunks = sse_chunks(reply.read().decode())
    assert plain == "Mail <EMAIL> or call <PHONE> today."
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == plain


def test_chat_repl_keeps_the_conversation(tok):
    from tasks.serve.chat import chat_repl

    script = tok.encode("Hello there.") + [tok.token_to_id("<|end|>")]
    lines = iter(["Hi", "/reset", "Again", "/exit", "never read"])
    shown: list[str] = []
    history = chat_repl(ChatEngine(ScriptedLM(script), tok, {}), read=lambda _: next(lines), write=shown.append,
                        system="Be kind.")
    assert [m["role"] for m in history] == ["system", "user", "assistant"]
    assert history[1]["content"] == "Again" and history[2]["content"] == "Hello there."
    assert "".join(shown) == "Hello there.\n" * 2


def tiny_random(arch: str, vocab_size: int):
    """A small model of `arch` with perturbed weights, so its answers are varied tokens."""
    import torch

    from models.architectures.registry import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, n_layer=2, n_embd=32, seq_len=64, vocab_size=vocab_size))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def tiny_rnn(vocab_size: int):
    return tiny_random("rnn", vocab_size)


def tiny_gcnn(vocab_size: int):
    return tiny_random("gcnn", vocab_size)


def ask_at_once(engine: ChatEngine, config: ServeConfig, questions: list[str], max_tokens: int):
    """Every question sent at once by its own client to a server of `engine`: (greedy answers, /health after)."""
    from concurrent.futures import ThreadPoolExecutor

    with TestClient(build_app(engine, config, api_key="")) as client:
        def ask(question: str) -> str:
            body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "temperature": 0}
            reply = client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200, reply.text
            return reply.json()["choices"][0]["message"]["content"]

        with ThreadPoolExecutor(len(questions)) as pool:
            answers = list(pool.map(ask, questions))
        return answers, client.get("/health").json()


@pytest.mark.parametrize("make_model", [tiny_gpt, tiny_rnn], ids=["gpt", "rnn"])
def test_concurrent_requests_are_batched_and_answer_as_if_alone(tok, make_model):
    """Continuous batching: answers decoded together in one forward pass per step equal the answers alone."""
    import time

    model = make_model(tok.vocab_size)
    model.register_forward_pre_hook(lambda *_: time.sleep(0.005))  # slow enough that the requests overlap
    engine = ChatEngine(model, tok, {})
    engine.stop_ids = set()  # answers of the full length, so they stay in flight together
    questions = ["Hi", "What is Debian?", "Tell me about Python and JSON files, please.", "Fox?"]
    alone = [engine.complete([{"role": "user", "content": q}], max_tokens=40, temperature=0)[0] for q in questions]
    batched, health = ask_at_once(engine, ServeConfig(max_batch=4, output_filter="none"), questions, 40)
    assert batched == alone
    assert health["peak_batch"] >= 2 and health["completed"] == 4


@pytest.mark.parametrize(("make_model", "max_batch"), [(tiny_gpt, 1), (tiny_gcnn, 8)], ids=["gpt-batch-1", "gcnn"])
def test_one_slot_is_the_batched_path_serving_one_request_at_a_time(tok, make_model, max_batch):
    """`max_batch=1`, and an arch that decodes one sequence per pass (gcnn), run the same decode loop with one slot:
    concurrent clients are answered one after the other, each as if alone."""
    import time

    model = make_model(tok.vocab_size)
    model.register_forward_pre_hook(lambda *_: time.sleep(0.002))  # slow enough that the requests overlap
    rows: list[int] = []
    model.register_forward_pre_hook(lambda _, args: rows.append(args[0].size(0)))
    engine = ChatEngine(model, tok, {})
    engine.stop_ids = set()
    questions = ["Hi", "What is Debian?", "Fox?"]
    alone = [engine.complete([{"role": "user", "content": q}], max_tokens=20, temperature=0)[0] for q in questions]
    rows.clear()
    served, health = ask_at_once(engine, ServeConfig(max_batch=max_batch, output_filter="none"), questions, 20)
    assert served == alone
    # peak_batch counts the decode loop's joins: the one path served them, one slot at a time
    assert health["peak_batch"] == 1 and health["completed"] == 3 and set(rows) == {1}


def test_quantize_int8_serves_the_checkpoint_with_int8_layers(tok, tmp_path):
    import torch
    from lm_fixtures import write_checkpoint

    from tasks.serve.serve import load_engine

    checkpoint = write_checkpoint(tmp_path, tiny_gpt(tok.vocab_size), tok)
    engine = load_engine(ServeConfig(model_uri=str(checkpoint), device="cpu", quantize="int8"))
    kinds = {type(m) for m in engine.model.modules()}
    assert torch.ao.nn.quantized.dynamic.Linear in kinds
    with TestClient(build_app(engine, ServeConfig(), api_key="")) as client:
        reply = client.post("/v1/chat/completions", json=HI)
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
