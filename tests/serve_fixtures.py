"""A real chat server process on loopback for the serve tests and the serve benchmark: `start_server` runs uvicorn
in a subprocess on a free port and waits for `/health`; `python tests/serve_fixtures.py PORT MAX_QUEUE DELAY [NAME
[VERSION]]` serves a scripted model (the fixture corpus's sentences, over and over) that takes DELAY seconds per token
(so a test can hold a generation open without a big model)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def start_server(args: list[str], port: int, log: Path, timeout: float = 120.0) -> Iterator[str]:
    """Run `args` (a server command listening on 127.0.0.1:`port`) until the block ends; yields its base URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not come up: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def slow_server_args(port: int, max_queue: int, delay: float, name: str = "slow", version: str = "") -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), str(port), str(max_queue), str(delay), name, version]


def main(port: int, max_queue: int, delay: float, name: str = "slow", version: str = "") -> None:
    import torch
    import uvicorn
    from lm_fixtures import CORPUS, ScriptedLM, tiny_tokenizer

    from models.inference.generate import ChatEngine
    from tasks.serve.serve import ServeConfig, build_app

    class SlowLM(ScriptedLM):
        def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, state: list | None = None):
            time.sleep(delay)
            return super().forward(idx, targets, state)

    tok = tiny_tokenizer()
    script = tok.encode(" ".join(CORPUS[1:] * 20))
    engine = ChatEngine(SlowLM(script), tok, {"step": 10}, name=name, version=version or None)
    cfg = ServeConfig(port=port, max_queue=max_queue, max_tokens_limit=2000)
    uvicorn.run(build_app(engine, cfg, api_key=""), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:])
