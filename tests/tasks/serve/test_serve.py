"""The OpenAI-compatible chat server: answers, SSE streaming, 4xx validation, API key, PII output filter."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from lm_fixtures import ScriptedLM, tiny_gpt, tiny_tokenizer

from models.generate import ChatEngine
from tasks.serve.serve import ChatRequest, ServeConfig, build_app, filtered_stream

HI = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def api(tok):
    app = build_app(ChatEngine(tiny_gpt(tok.vocab_size), tok, {}, name="lmforge@champion"), ServeConfig(), api_key="")
    return TestClient(app)


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


@pytest.mark.parametrize("body, status, needle", [
    (b"{not json", 400, "not valid JSON"),
    (json.dumps({"messages": []}).encode(), 400, "messages"),
    (json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), 400, "role"),
    (json.dumps({**HI, "max_tokens": 100000}).encode(), 400, "max_tokens 100000 exceeds"),
    (json.dumps({**HI, "temperature": 9}).encode(), 400, "temperature"),
    (json.dumps({"messages": [{"role": "user", "content": "x" * 70000}]}).encode(), 413, "limit is 65536"),
])
def test_bad_requests_get_clear_4xx(api, body, status, needle):
    reply = api.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == status
    assert needle in reply.json()["error"]["message"]


def test_api_key_is_required_when_set(tok):
    engine = ChatEngine(tiny_gpt(tok.vocab_size), tok, {})
    client = TestClient(build_app(engine, ServeConfig(), api_key="s3cret"))
    missing = client.post("/v1/chat/completions", json=HI)
    assert missing.status_code == 401 and "API key" in missing.json()["error"]["message"]
    assert client.post("/v1/chat/completions", json=HI, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/v1/chat/completions", json=HI, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/health").status_code == 200  # liveness probes need no key


def test_pii_is_filtered_from_plain_and_streamed_answers(tok):
    leak = "Mail jane.doe@example.com or call +44 20 7946 0958 today."
    script = tok.encode(leak) + [tok.token_to_id("<|end|>")]
    client = TestClient(build_app(ChatEngine(ScriptedLM(script), tok, {}), ServeConfig(), api_key=""))
    request = {**HI, "max_tokens": 200}
    plain = client.post("/v1/chat/completions", json=request).json()["choices"][0]["message"]["content"]
    assert plain == "Mail <EMAIL> or call <PHONE> today."
    with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as reply:
        chunks = sse_chunks(reply.read().decode())
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == plain


def test_filtered_stream_holds_back_enough_to_catch_split_spans():
    upper = lambda text: text.replace("secret", "******")
    deltas = ["a" * 60, "sec", "ret", " end"]
    assert "".join(filtered_stream(iter(deltas), upper)) == "a" * 60 + "****** end"


def test_request_accepts_openai_extras():
    req = ChatRequest.model_validate({**HI, "user": "u1", "n": 1, "stop": "\n"})
    assert req.stop == "\n" and req.max_tokens == 5


def test_chat_repl_keeps_the_conversation(tok):
    from tasks.serve.serve import chat_repl

    script = tok.encode("Hello there.") + [tok.token_to_id("<|end|>")]
    lines = iter(["Hi", "/reset", "Again", "/exit", "never read"])
    shown: list[str] = []
    history = chat_repl(ChatEngine(ScriptedLM(script), tok, {}), read=lambda _: next(lines), write=shown.append,
                        system="Be kind.")
    assert [m["role"] for m in history] == ["system", "user", "assistant"]
    assert history[1]["content"] == "Again" and history[2]["content"] == "Hello there."
    assert "".join(shown) == "Hello there.\n" * 2
