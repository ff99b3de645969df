"""The chat page (`GET /`) in headless Chromium against a real server process, used as a person uses it: type a
question, watch the answer stream in, press Stop mid-answer (the server must count the cancelled generation), ask
again with the conversation sent along; refusals (400, 429) show as messages on the page. The screenshot goes to
$LMFORGE_SCREENSHOTS when set (docs/screenshots/chat-page.png is refreshed from it), else to the test's tmp dir."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from browser import CHROMIUM, Tab, chromium
from lm_fixtures import tiny_tokenizer
from serve_fixtures import free_port, slow_server_args, start_server

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (make setup installs it)")]

DELAY = 0.05  # seconds per token: a 400-token answer would stream for 20 s
MAX_TOKENS = 400
ANSWER_TOKENS = 100
LENGTH = "max tokens reached"
LAST_ANSWER = "[...document.querySelectorAll('.msg.assistant')].at(-1)"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The scripted slow model, one generation at a time and no queue (a second request meanwhile gets 429)."""
    port = free_port()
    log = tmp_path_factory.mktemp("chat-page-server") / "server.log"
    with start_server(slow_server_args(port, 0, DELAY, name="lmforge-chat@champion", version="3"), port, log) as url:
        yield url


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()


def wait_idle(url: str) -> dict:
    deadline = time.monotonic() + 30
    while (now := health(url))["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


def answer(tab: Tab) -> str:
    return tab.js(f"{LAST_ANSWER}?.querySelector('.text').textContent ?? ''")


def ask(tab: Tab, question: str, max_tokens: int) -> None:
    tab.js(f"document.getElementById('max-tokens').value = '{max_tokens}'")
    tab.type("#prompt", question)
    tab.click("#send")


def sent_messages(tab: Tab) -> list[list[dict]]:
    """The `messages` of each chat request the page sent since the last call, read off the network."""
    sent = []
    for event in tab.events("Network.requestWillBeSent"):
        if event["request"]["url"].endswith("/v1/chat/completions"):
            body = event["request"].get("postData") or tab.send(
                "Network.getRequestPostData", requestId=event["requestId"])["postData"]
            sent.append(json.loads(body)["messages"])
    return sent


def test_the_page_streams_stops_and_sends_the_conversation(server: str, tmp_path: Path):
    tokenizer = tiny_tokenizer()
    before = wait_idle(server)
    with chromium(tmp_path / "profile") as tab:
        tab.send("Network.enable")
        tab.open(f"{server}/")
        model = tab.wait_for("document.getElementById('model').textContent.includes('version') &&"
                             " document.getElementById('model').textContent")
        assert model == "lmforge-chat@champion · version 3 · step 10"

        ask(tab, "What is Debian?", MAX_TOKENS)
        seen = [answer(tab)]
        while len(set(seen)) < 8:  # the answer grows across polls, a token every 50 ms
            time.sleep(0.1)
            seen.append(answer(tab))
            assert len(seen) < 100, seen
        assert all(a.startswith(b) for a, b in zip(seen[1:], seen)) and health(server)["running"] == 1
        tab.click("#stop")
        tab.wait_for("!document.querySelector('.streaming')")
        stopped = answer(tab)
        assert tab.js(f"{LAST_ANSWER}.querySelector('.note').textContent") == "stopped"
        assert 0 < len(tokenizer.encode(stopped)) < MAX_TOKENS / 4
        after_stop = wait_idle(server)
        assert after_stop["cancelled"] == before["cancelled"] + 1 and after_stop["completed"] == before["completed"]

        ask(tab, "And Python?", ANSWER_TOKENS)
        tab.wait_for(f"{LAST_ANSWER}.querySelector('.note').textContent == '{ANSWER_TOKENS} tokens · {LENGTH}'")
        first, second = sent_messages(tab)
        assert first == [{"role": "user", "content": "What is Debian?"}]
        assert second == [first[0], {"role": "assistant", "content": stopped},
                          {"role": "user", "content": "And Python?"}]
        assert health(server)["completed"] == before["completed"] + 1
        shots = Path(os.environ.get("LMFORGE_SCREENSHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        assert tab.screenshot(shots / "chat-page.png").stat().st_size > 10_000


def test_refusals_show_on_the_page_and_leave_the_question_to_retry(server: str, tmp_path: Path):
    wait_idle(server)
    with chromium(tmp_path / "profile") as tab, ThreadPoolExecutor(1) as pool:
        tab.open(f"{server}/")
        error = "!document.getElementById('error').hidden && document.getElementById('error').textContent"

        ask(tab, "Hi", 5000)  # over the server's max_tokens limit
        assert tab.wait_for(error).startswith("HTTP 400: ") and "max_tokens" in tab.js(error)
        assert tab.js("document.getElementById('prompt').value") == "Hi"
        assert tab.js("document.querySelectorAll('.msg').length") == 0

        busy = pool.submit(httpx.post, f"{server}/v1/chat/completions", timeout=60,
                           json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 40})
        while not health(server)["running"]:
            time.sleep(0.02)
        tab.js("document.getElementById('prompt').value = ''")
        ask(tab, "<b>Hi</b>", 5)
        assert tab.wait_for(error).startswith("HTTP 429: the server is busy")
        assert busy.result().status_code == 200
        wait_idle(server)
        tab.click("#send")  # the question is still in the box: a retry once the server is free answers
        tab.wait_for(f"{LAST_ANSWER}?.querySelector('.note').textContent == '5 tokens · {LENGTH}'")
        assert tab.js("document.getElementById('error').hidden")
        assert tab.js("document.querySelector('.msg.user .text').textContent") == "<b>Hi</b>"  # markup shown as text
        assert tab.js("document.querySelectorAll('#messages b').length") == 0
