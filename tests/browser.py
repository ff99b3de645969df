"""Headless Chromium driven over the DevTools protocol, for the tests that use a page as a person does: Debian's
`chromium` (no browser download), a throwaway profile, one tab, and a small synchronous client over `websockets`
(commands answered by id; events kept in order for `events()`). Typing and clicking are real input events."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUIET = [  # headless on a closed network: no background traffic (tests/infra/test_ui.py renders pages with these too)
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class BrowserError(RuntimeError):
    """A DevTools command failed, or JavaScript threw."""


class Tab:
    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 * 2**20)  # screenshots come back as one message
        self.ids = itertools.count(1)
        self.pending: list[dict[str, Any]] = []  # events not yet taken by `events`

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        sent = next(self.ids)
        self.ws.send(json.dumps({"id": sent, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == sent:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message["result"]
            self.pending.append(message)

    def events(self, method: str) -> list[dict[str, Any]]:
        """The params of every `method` event seen so far (and not taken before)."""
        taken = [e["params"] for e in self.pending if e.get("method") == method]
        self.pending = [e for e in self.pending if e.get("method") != method]
        return taken

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, ready: str = "document.readyState === 'complete'") -> None:
        self.send("Page.navigate", url=url)
        self.wait_for(ready)

    def wait_for(self, condition: str, timeout: float = 20.0) -> Any:
        """Poll the JavaScript `condition` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while not (value := self.js(condition)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {condition}")
            time.sleep(0.05)
        return value

    def type(self, selector: str, text: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def click(self, selector: str) -> None:
        """A mouse click in the middle of the element, as a person's."""
        box = self.js(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                      " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path


@contextmanager
def chromium(profile: Path) -> Iterator[Tab]:
    """A headless Chromium with one blank tab, closed when the block ends."""
    profile.mkdir(parents=True, exist_ok=True)
    flags = [*QUIET, f"--user-data-dir={profile}", "--window-size=1000,760", "--remote-debugging-port=0"]
    proc = subprocess.Popen([CHROMIUM, *flags, "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tab = None
    try:
        port_file = profile / "DevToolsActivePort"  # Chromium writes the port it picked here
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BrowserError(f"chromium did not start (exit {proc.poll()})")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        tab = Tab(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        yield tab
    finally:
        if tab is not None:
            tab.ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
