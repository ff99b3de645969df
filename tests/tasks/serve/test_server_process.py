"""The chat server as a real process on loopback under concurrent clients: the deadlock scenario of issue 12 on
`lmforge serve` itself, a full queue answering 429 with Retry-After, disconnecting clients cancelling their
generation, and first-in-first-out service."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from lm_fixtures import CORPUS, tiny_gpt, tiny_tokenizer, write_checkpoint
from serve_fixtures import free_port, slow_server_args, start_server

DELAY = 0.02  # seconds per token of the slow server: 100 tokens hold a generation open for 2 s
MAX_QUEUE = 2


def ask(content: str, max_tokens: int, stream: bool = False) -> dict:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "stream": stream}


def wait_idle(url: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/health", timeout=5).json()
        if not health["running"] and not health["waiting"]:
            return health
        time.sleep(0.05)
    raise AssertionError(f"server still busy after {timeout} s: {health}")


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("slow-server") / "server.log"
    with start_server(slow_server_args(port, MAX_QUEUE, DELAY), port, log) as url:
        yield url


@pytest.mark.slow
def test_lmforge_serve_answers_stream_plain_and_health_together(tmp_path):
    """Issue 12's report: a stream, half a second later a plain request and /health; all hung. Now all answer."""
    tok = tiny_tokenizer()
    checkpoint = write_checkpoint(tmp_path / "train", tiny_gpt(tok.vocab_size, seq_len=256), tok)
    port = free_port()
    lmforge = str(Path(sys.executable).parent / "lmforge")
    args = [lmforge, "serve", "--model", str(checkpoint), "--port", str(port), "--device", "auto"]
    with start_server(args, port, tmp_path / "serve.log") as url, ThreadPoolExecutor(3) as pool:
        def stream() -> list[str]:
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=ask("Tell me about Debian", 200, True),
                              timeout=60) as reply:
                assert reply.status_code == 200
                return [line for line in reply.iter_lines() if line.startswith("data: ")]

        streamed = pool.submit(stream)
        time.sleep(0.5)
        plain = pool.submit(httpx.post, f"{url}/v1/chat/completions", json=ask("Hi", 20), timeout=60)
        health = pool.submit(httpx.get, f"{url}/health", timeout=60)
        assert health.result(timeout=60).json()["status"] == "ok"
        assert plain.result(timeout=60).json()["choices"][0]["message"]["role"] == "assistant"
        assert streamed.result(timeout=60)[-1] == "data: [DONE]"
        assert httpx.get(f"{url}/health", timeout=5).json()["completed"] == 2


def test_health_and_models_answer_while_a_generation_runs(slow):
    wait_idle(slow)
    with ThreadPoolExecutor(1) as pool:
        plain = pool.submit(httpx.post, f"{slow}/v1/chat/completions", json=ask("Hi", 150), timeout=60)
        seen_running = False
        while not plain.done():  # the generation holds the worker for ~3 s; the loop stays free meanwhile
            health = httpx.get(f"{slow}/health", timeout=2).json()
            assert httpx.get(f"{slow}/v1/models", timeout=2).json()["data"][0]["id"] == "slow"
            seen_running |= health["running"]
        assert seen_running and plain.result().status_code == 200


def test_a_full_queue_answers_429_with_retry_after(slow):
    wait_idle(slow)
    before = httpx.get(f"{slow}/health").json()
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(MAX_QUEUE + 1) as pool:
        # one running and MAX_QUEUE waiting fill the server
        held = [pool.submit(client.post, f"{slow}/v1/chat/completions", json=ask("Hi", 60))
                for _ in range(MAX_QUEUE + 1)]
        deadline = time.monotonic() + 10
        while httpx.get(f"{slow}/health").json()["waiting"] < MAX_QUEUE and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = client.post(f"{slow}/v1/chat/completions", json=ask("Hi", 5))
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert [f.result().status_code for f in held] == [200] * (MAX_QUEUE + 1)  # the queued ones still answer
    after = wait_idle(slow)
    assert after["rejected"] == before["rejected"] + 1 and after["completed"] == before["completed"] + MAX_QUEUE + 1


def test_a_client_that_disconnects_mid_stream_cancels_its_generation(slow):
    before = wait_idle(slow)
    started = time.monotonic()
    with httpx.stream("POST", f"{slow}/v1/chat/completions", json=ask("Hi", 1000, True), timeout=60) as reply:
        data = (line for line in reply.iter_lines() if line.startswith("data: "))
        assert '"role": "assistant"' in next(data)
        assert '"content"' in next(data)  # the first text arrived: hang up
    after = wait_idle(slow, timeout=10)  # the full answer would take 1000 x 20 ms = 20 s
    assert time.monotonic() - started < 10
    assert after["cancelled"] == before["cancelled"] + 1 and after["completed"] == before["completed"]


def test_queued_and_plain_clients_that_leave_are_dropped(slow):
    """A plain client that times out, and queued clients (plain and streaming) that leave, cost no generation."""
    before = wait_idle(slow)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(httpx.post, f"{slow}/v1/chat/completions", json=ask("Hi", 100), timeout=0.5)
        time.sleep(0.1)
        queued = pool.submit(httpx.post, f"{slow}/v1/chat/completions", json=ask("Hi", 100), timeout=0.5)
        time.sleep(0.1)
        with httpx.stream("POST", f"{slow}/v1/chat/completions", json=ask("Hi", 100, True), timeout=60) as reply:
            assert '"role": "assistant"' in next(reply.iter_lines())  # queued behind two: hang up before any text
        for future in (running, queued):
            with pytest.raises(httpx.ReadTimeout):
                future.result()
    after = wait_idle(slow, timeout=10)  # the three answers would take 3 x 100 x 20 ms = 6 s
    assert after["cancelled"] == before["cancelled"] + 3 and after["completed"] == before["completed"]


def test_requests_are_served_first_in_first_out(slow):
    wait_idle(slow)
    finished: list[int] = []
    lock = threading.Lock()

    def request(i: int) -> None:
        reply = httpx.post(f"{slow}/v1/chat/completions", json=ask(f"Question {i}", 15), timeout=60)
        assert reply.status_code == 200, reply.text
        with lock:
            finished.append(i)

    with ThreadPoolExecutor(MAX_QUEUE + 1) as pool:
        futures = []
        for i in range(MAX_QUEUE + 1):
            futures.append(pool.submit(request, i))
            time.sleep(0.1)  # arrival order 0, 1, 2; each answer takes 15 x 20 ms = 0.3 s
        for future in futures:
            future.result()
    assert finished == list(range(MAX_QUEUE + 1))


def test_sse_lines_are_valid_openai_chunks(slow):
    wait_idle(slow)
    with httpx.stream("POST", f"{slow}/v1/chat/completions", json=ask("Hi", 8, True), timeout=60) as reply:
        lines = [line.removeprefix("data: ") for line in reply.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(line) for line in lines[:-1]]
    assert lines[-1] == "[DONE]" and chunks[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text and " ".join(CORPUS[1:]).startswith(text)  # the slow server's script


def test_a_huge_body_is_refused_from_its_content_length_before_it_is_sent(slow):
    import socket
    from urllib.parse import urlparse

    address = urlparse(slow)
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n")  # 1 GB announced, not a byte of it sent
        reply = ""
        while "}}" not in reply and (data := conn.recv(65536)):  # headers and JSON body may come in two packets
            reply += data.decode()
    assert reply.startswith("HTTP/1.1 413") and "the limit is 65536" in reply
