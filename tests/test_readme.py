"""The README as tests: every command in its ```bash blocks that runs `lmforge`, `make` or `.venv/bin/…` is run here
as written, so the README cannot drift from the CLI.

The README is parsed at test time: a new command is covered automatically, and a command no handler below knows
fails `test_every_readme_command_has_a_handler` until one is added. Placeholders the README names stand for user
files; the tiny demo run's fixtures stand in for them (a site directory, WARC files, eval files, JSONL rows).
Long-running commands get a tiny `--set` budget appended, servers get free ports (tests never take 4200/5000/8000),
and `make demo` / `make test` are checked by their Makefile recipes (the demo's command is the one the shared run
executes; `make test` is not run inside the test suite).
"""

from __future__ import annotations

import bz2
import functools
import http.server
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from demo_run import DemoRun

from infra.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def readme_commands(text: str) -> list[str]:
    """The commands of the README's ```bash blocks that run lmforge, make or .venv/bin/…, continuations joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", re.sub(r"\s+", " ", line.strip()))  # bash drops comments too
            if re.match(r"(make |lmforge |\.venv/bin/)", line):
                commands.append(line)
    return commands


def command_key(command: str) -> str:
    """`make demo`, `lmforge eval`, `lmforge finetune --task classify`, …: what decides how a command is run."""
    words = shlex.split(command)
    if words[0] == "make":
        return f"make {words[1]}"
    name = Path(words[0]).name
    key = f"{name} {words[1]}" if len(words) > 1 and not words[1].startswith("-") else name
    if "--task" in words:
        key += f" --task {words[words.index('--task') + 1]}"
    return key


COMMANDS = readme_commands((ROOT / "README.md").read_text())


def makefile_recipe(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    found = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)*)", text, re.M)
    assert found, f"the README runs `make {target}` but the Makefile has no {target} target"
    return [line.strip() for line in found.group(1).splitlines()]


# ---- user files the README names, built from the demo run's fixtures ------------------------------------------------


def write_user_files(demo: DemoRun) -> None:
    cwd = demo.cwd
    (cwd / "recipes.yaml").write_text("recipes:\n  - name: baseline\n  - name: no-dedup\n"
                                      "    overrides: {curate: {exact_dedup: false, minhash: false}}\n")
    (cwd / "my.yaml").write_text(f"crawl:\n  local_site:\n    roots: {{site: '{demo.site}'}}\n")
    (cwd / "notes.txt").write_text("The quiet river carries the golden lantern near the old bridge.\n")
    hellaswag = [("The quiet river", 0, ["carries the golden lantern.", "is a fox.", "reads JSON.", "Debian."])]
    (cwd / "hellaswag_val.txt.bz2").write_bytes(bz2.compress("".join(
        f"{ctx}\n{gold}\n" + "".join(e + "\n" for e in ends) for ctx, gold, ends in hellaswag).encode()))
    (cwd / "arc_easy.jsonl").write_text(json.dumps({"question": {"stem": "What does the river carry?", "choices": [
        {"text": "the golden lantern", "label": "A"}, {"text": "a stone", "label": "B"}]}, "answerKey": "A"}) + "\n")
    (cwd / "lambada.jsonl").write_text(json.dumps({"text": "The quiet river carries the golden lantern"}) + "\n")
    (cwd / "reviews.jsonl").write_text("".join(
        json.dumps({"text": f"review {i}: " + ("a lovely bright garden" if i % 2 else "a dull broken engine"),
                    "label": "good" if i % 2 else "bad"}) + "\n" for i in range(60)))
    (cwd / "pairs.jsonl").write_text("".join(
        json.dumps({"input": f"river {i}", "output": f"lantern {i}"}) + "\n" for i in range(20)))


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """`directory` over HTTP on 127.0.0.1 (a stand-in for a real site such as https://example.org/)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# ---- how each kind of command runs -----------------------------------------------------------------------------------


def ok(demo: DemoRun, command: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    done = demo.sh(command, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"`{command}` failed:\n{done.stderr[-3000:]}\n{done.stdout[-2000:]}"
    return done


def run_make(demo: DemoRun, command: str) -> None:
    target = command.split()[1]
    recipe = makefile_recipe(target)
    if target == "demo":  # smol_cpu: the README's `lmforge run --preset smol_cpu --set base.source=…` runs it
        assert "$(BIN)/lmforge run --preset smol_cpu" in recipe, recipe
    else:
        assert any("pytest" in line for line in recipe), recipe


# The hub model the README names; without a network a tiny random model of the same family stands in for it.
HUB_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"
# smol_cpu's rows and evaluation sized to the tiny stand-in (a 512-token context; SFT rows must hold SmolLM2's
# default system prompt, which its template adds, spelled in a 400-token vocabulary).
BASE_BUDGET = ["tokenize.min_bytes_per_token=1.0",  # the stand-in's 400-token vocabulary compresses less than a real one
               "train.seq_len=64", "train.max_steps=4", "sft.seq_len=256", "sft.max_steps=2", "evaluate.seq_len=64",
               "evaluate.max_val_tokens=2048", "evaluate.safety_prompts=[]"]


def tiny_base(demo: DemoRun) -> str:
    """A tiny Llama-family model in HF layout (random weights, SmolLM2's tokens and template) for `HUB_MODEL`."""
    from pretrained_fixtures import save_tiny_hf_model

    path = demo.cwd / "tiny-hf-model"
    if not (path / "config.json").is_file():
        save_tiny_hf_model(path, "llama", context=512)
    return str(path)


def on_session_server(demo: DemoRun) -> DemoRun:
    """`demo` with PREFECT_API_URL set to this session's server (`prefect_server`): each flow command would otherwise
    start a Prefect server of its own (~20 s each, eight commands); that start is what the demo run itself covers."""
    return DemoRun(demo.cwd, demo.home, demo.site, {**demo.env, "PREFECT_API_URL": os.environ["PREFECT_API_URL"]},
                   demo.stdout, demo.log_file)


def run_import(demo: DemoRun, command: str) -> None:
    done = ok(on_session_server(demo), command.replace(HUB_MODEL, tiny_base(demo)))
    assert "imported" in done.stdout and "parameters" in done.stdout, done.stdout


def run_pipeline(demo: DemoRun, command: str) -> None:
    warcs = sorted(demo.home.glob("runs/crawl/*/warc/*.warc.gz"))
    with served(demo.site) as site_url:
        command = (command.replace("/path/to/html", str(demo.site))
                   .replace("https://example.org/", site_url)
                   .replace("/data/cc/*.warc.gz", str(warcs[0].parent / "*.warc.gz"))
                   .replace(HUB_MODEL, tiny_base(demo)))
        budget = demo_budget() + (BASE_BUDGET if "base.source" in command else [])
        if "crawl.local_site=null" in command:  # no local site to configure
            budget = [key for key in budget if not key.startswith("crawl.local_site")]
        if "crawl.local_site" not in command:  # the preset's or my.yaml's demo corpus → the tiny site
            budget.append(f"crawl.local_site.roots={{site: {demo.site}}}")
        if site_url in command:  # the loopback stand-in for a real site: allow exactly its host:port
            budget.append(f"crawl.allow_private_hosts=['{urlsplit(site_url).netloc}']")
        done = ok(on_session_server(demo), f"{command} {demo.budget(budget)}")
    assert "lmforge pipeline finished" in done.stdout
    if "base.source" in command:  # adapted from the base: before → after, the base registered, answers printed
        assert "base model" in done.stdout and "val_bpb base → adapted" in done.stdout and "\nQ: " in done.stdout
        # the train row is the train stage's (BASE_BUDGET: 4 steps), SFT's (2 steps) has its own
        assert summary_row(done.stdout, "train steps / time").startswith("4 / "), done.stdout
        assert summary_row(done.stdout, "SFT steps / time").startswith("2 / "), done.stdout
        # evaluate ran for the base before training and for the adapted model after SFT: each line has its own time
        assert console_time(done.stdout, "evaluate-base") != "reused"
        assert console_time(done.stdout, "evaluate") == own_time(demo.home, "evaluate"), done.stdout


def summary_row(stdout: str, label: str) -> str:
    """The value of one row of the pipeline's summary table."""
    found = re.search(rf"^{re.escape(label)}\s+(\S.*)$", stdout, re.MULTILINE)
    assert found, f"no {label!r} row in:\n{stdout}"
    return found.group(1)


def console_time(stdout: str, stage: str) -> str:
    """The time a stage's finished console line shows: `done   evaluate  val loss … (29s)` → `29s`."""
    times = [line.rsplit("(", 1)[1].rstrip(")") for line in stdout.splitlines()
             if line.startswith("done") and line.split()[1] == stage]
    assert len(times) == 1, (stage, stdout)
    return times[0]


def own_time(home: Path, stage: str, latest: bool = True) -> str:
    """The clock time of the work of `stage`'s latest (or first) run, as its manifest records it."""
    from tasks.core.progress import clock

    manifests = [json.loads(p.read_text()) for p in (home / "runs" / stage).glob("*/manifest.json")]
    return clock((max if latest else min)(manifests, key=lambda m: m["finished_at"])["seconds"])


def run_ablate(demo: DemoRun, command: str) -> None:
    """2 recipes × 2 seeds of the demo's tiny model on the tiny site, a few training steps each."""
    command = re.sub(r"--token-budget \S+", "--token-budget 2048", re.sub(r"--seeds \S+", "--seeds 0,1", command))
    budget = [*demo_budget(), f"crawl.local_site.roots={{site: {demo.site}}}", "evaluate.max_val_tokens=4000"]
    done = ok(demo, f"{command} {demo.budget(budget)}")
    assert "lmforge ablation finished: 2 recipes × 2 seeds" in done.stdout and "Verdict:" in done.stdout, done.stdout
    assert "| baseline | 2 |" in done.stdout and "| no-dedup | 2 |" in done.stdout, done.stdout


def demo_budget() -> list[str]:
    from demo_run import CLI_BUDGET

    return list(CLI_BUDGET)


def run_config(demo: DemoRun, command: str) -> None:
    ok(demo, command)
    written = re.search(r">\s*(\S+)", command)
    if written:
        import yaml

        assert yaml.safe_load((demo.cwd / written.group(1)).read_text())["name"] == "tiny_cpu"


def run_eval(demo: DemoRun, command: str) -> None:
    metrics = json.loads(ok(demo, command).stdout)["metrics"]
    for key in ("text/notes_bpb", "hellaswag_acc", "arc_acc", "lambada_acc"):
        assert key in metrics, metrics


FINETUNE_BUDGET = {
    "lmforge finetune": ["sft.max_steps=3"],
    "lmforge finetune --task classify": ["epochs=1"],
    "lmforge finetune --task generate": ["sft.max_steps=3", "max_new_tokens=4"],
    "lmforge finetune --task dpo": ["dpo.max_steps=2", "dpo.max_len=128", "data.max_spin_pairs=6",
                                    "data.spin_max_tokens=8", "conversations.max_derived=6", "evaluate.prompts=[]"],
}


def run_finetune(demo: DemoRun, command: str) -> None:
    done = ok(on_session_server(demo), f"{command} {demo.budget(FINETUNE_BUDGET[command_key(command)])}")
    assert "registered models:/" in done.stdout or "fine-tuned" in done.stdout, done.stdout


def run_export(demo: DemoRun, command: str) -> None:
    ok(demo, command)
    out = shlex.split(command)[shlex.split(command).index("--out") + 1]
    assert (demo.cwd / out / "config.json").is_file()


def run_chat(demo: DemoRun, command: str) -> None:
    done = ok(demo, command, input="Where is the lantern?\n/exit\n")
    assert "you>" in done.stdout


def wait_for(check: Callable[[], bool], process: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0][-3000:]
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"not ready within {timeout_s} s")


@contextmanager
def background(demo: DemoRun, command: str) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=demo.cwd, env=demo.env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_serve(demo: DemoRun, command: str) -> None:
    port = free_port()
    with background(demo, command.replace("--port 8000", f"--port {port}")) as process:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "lmforge-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        wait_for(lambda: httpx.post(url, json=body, timeout=30).status_code == 200, process)
        assert httpx.post(url, json=body, timeout=30).json()["choices"][0]["message"]["role"] == "assistant"


def run_up(demo: DemoRun, command: str) -> None:
    if (demo.home / "servers.json").exists():  # the README's blocks each start with `up`; one pair of servers
        ok(demo, ".venv/bin/lmforge down")
    ports = (free_port(), free_port())
    done = ok(demo, f"{command} --prefect-port {ports[0]} --mlflow-port {ports[1]}")
    assert f"http://127.0.0.1:{ports[1]}" in done.stdout
    assert httpx.get(f"http://127.0.0.1:{ports[1]}/health", timeout=10).status_code == 200


def run_down(demo: DemoRun, command: str) -> None:
    assert "stopped" in ok(demo, command).stdout


def prefect_api(demo: DemoRun) -> str:
    """The API of the servers `lmforge up` started (the README runs `up` before the commands that need one)."""
    if not (demo.home / "servers.json").exists():
        run_up(demo, ".venv/bin/lmforge up")
    return json.loads((demo.home / "servers.json").read_text())["prefect_url"] + "/api"


def deployed(api: str) -> set[str]:
    return {d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()}


def run_serve_flows(demo: DemoRun, command: str) -> None:
    api = prefect_api(demo)
    with background(demo, command) as process:
        wait_for(lambda: "pipeline" in deployed(api), process)


def in_checkout(demo: DemoRun, api: str) -> DemoRun:
    """The README runs the `prefect` commands from the checkout (prefect.yaml) with PREFECT_API_URL set."""
    env = {**demo.env, "PREFECT_API_URL": api, "LMFORGE_ROOT": str(ROOT)}
    return DemoRun(ROOT, demo.home, demo.site, env, demo.stdout, demo.log_file)


def run_prefect(demo: DemoRun, command: str) -> None:
    api = prefect_api(demo)
    ok(in_checkout(demo, api), command)
    words = shlex.split(command)
    if "work-pool" in words:
        pool = words[words.index("create") + 1]
        assert httpx.get(f"{api}/work_pools/{pool}", timeout=10).status_code == 200
    else:  # deploy --all: the deployments of prefect.yaml
        assert "pipeline" in deployed(api)


def run_prefect_worker(demo: DemoRun, command: str) -> None:
    api = prefect_api(demo)
    pool = shlex.split(command)[shlex.split(command).index("--pool") + 1]
    with background(in_checkout(demo, api), command) as process:
        wait_for(lambda: httpx.post(f"{api}/work_pools/{pool}/workers/filter", json={}, timeout=10).json(), process)


def run_up_postgres(demo: DemoRun, command: str) -> None:
    """`lmforge up` on PostgreSQL: a throwaway cluster (tests/postgres_cluster.py) stands in for the `db` host."""
    from postgres_cluster import PASSWORD, USER, postgres_cluster

    if (demo.home / "servers.json").exists():
        ok(demo, ".venv/bin/lmforge down")
    with postgres_cluster() as pg:
        run_up(demo, command.replace("lmforge:PW@db:5432", f"{USER}:{PASSWORD}@{pg.host}:{pg.port}"))
        ok(demo, ".venv/bin/lmforge down")


def run_bench(demo: DemoRun, command: str) -> None:
    """Benchmarks read ../shared/data, which a fresh machine lacks: the script must start and parse its options."""
    done = ok(DemoRun(ROOT, demo.home, demo.site, demo.env, demo.stdout, demo.log_file), f"{command} --help")
    assert "usage:" in done.stdout


def run_up_any(demo: DemoRun, command: str) -> None:
    (run_up_postgres if "postgresql" in command else run_up)(demo, command)


HANDLERS: dict[str, Callable[[DemoRun, str], None]] = {
    "make demo": run_make,
    "make test": run_make,
    "lmforge up": run_up_any,
    "lmforge down": run_down,
    "lmforge run": run_pipeline,
    "lmforge config": run_config,
    "lmforge ablate": run_ablate,
    "lmforge import": run_import,
    "lmforge eval": run_eval,
    "lmforge finetune": run_finetune,
    "lmforge finetune --task classify": run_finetune,
    "lmforge finetune --task generate": run_finetune,
    "lmforge finetune --task dpo": run_finetune,
    "lmforge serve": run_serve,
    "lmforge chat": run_chat,
    "lmforge export": run_export,
    "lmforge serve-flows": run_serve_flows,
    "prefect work-pool": run_prefect,
    "prefect": run_prefect,  # prefect --no-prompt deploy --all
    "prefect worker": run_prefect_worker,
    "python bench/extract.py": run_bench,
}


def test_readme_has_commands_and_parser_finds_continuations():
    assert len(COMMANDS) >= 10
    evals = [c for c in COMMANDS if command_key(c) == "lmforge eval"]
    assert evals and "lambada_file=lambada.jsonl" in evals[0]  # the backslash-continued line is one command


def test_every_readme_command_has_a_handler():
    unknown = sorted({command_key(c) for c in COMMANDS} - set(HANDLERS))
    assert not unknown, f"README commands no test runs: {unknown}; add a handler in tests/test_readme.py"


@pytest.mark.slow
def test_demo_output_is_one_screen(demo_run: DemoRun):
    """`make demo`'s command: ≤ 60 lines of stdout, a line per stage, the summary table; library logs in the file."""
    lines = demo_run.stdout.splitlines()
    assert len(lines) <= 60, demo_run.stdout
    for stage in ("crawl", "curate", "shard", "tokenize", "train", "evaluate", "register"):
        assert any(line.startswith("done") and f" {stage} " in line for line in lines), (stage, demo_run.stdout)
    # a periodic line (every LMFORGE_PROGRESS_EVERY_S=1 s here): curation alone takes longer than that
    assert any(re.match(r"\s*\d+m?\d*s (crawl|curate|tokenize|train|evaluate) ", line) for line in lines), demo_run.stdout
    assert "val bits per byte" in demo_run.stdout
    assert summary_row(demo_run.stdout, "train steps / time").startswith("60 / ")  # SCALED_DOWN's train.max_steps
    # the demo's own evaluation, the home's first: the README's commands evaluate more models there later
    assert console_time(demo_run.stdout, "evaluate") == own_time(demo_run.home, "evaluate", latest=False)
    assert f"Library logs of this run: {demo_run.log_file}" in demo_run.stdout
    log = demo_run.log_file.read_text()
    assert "datatrove" in log and "Finished in state Completed" in log  # datatrove's and Prefect's INFO logs


@pytest.fixture(scope="module")
def servers_stopped_after(demo_run: DemoRun):
    yield
    if (demo_run.home / "servers.json").exists():
        demo_run.sh(".venv/bin/lmforge down")


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_written(demo_run: DemoRun, servers_stopped_after, prefect_server, command: str):
    if not (demo_run.cwd / "notes.txt").exists():
        write_user_files(demo_run)
    HANDLERS[command_key(command)](demo_run, command)
