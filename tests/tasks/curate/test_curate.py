"""run_curate on a tiny corpus: what each step drops (and where its rejects go), PII in the output, near-dup
clusters, dedup against an earlier run, errors that surface from workers, and an interrupted run resuming to
byte-identical shards."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from curate_data import FRENCH, GERMAN, doc_row, edit, english, write_docset

from tasks.core.artifacts import file_sha256
from tasks.core.executors import run_pipeline
from tasks.core.schema import SHARD_SCHEMA
from tasks.curate.config import CurateConfig
from tasks.curate.curate import run_curate
from tasks.shard.shard import ShardConfig, run_shard

SEEDS = [0, 1, 3, 4, 5, 6]  # english(2) trips Gopher's duplicated 5-gram rule, which is fine but not what we test


def corpus() -> list[dict]:
    rows = [doc_row(english(s), f"http://site.test/p{s}.html") for s in SEEDS]
    rows += [
        doc_row(english(0), "http://site.test/copy-of-p0.html"),
        doc_row(edit(english(1), 0.01, seed=7), "http://site.test/near-p1.html"),
        doc_row(GERMAN, "http://site.test/de.html"),
        doc_row(FRENCH, "http://site.test/fr.html"),
        doc_row(english(50) + "\n\nWrite to jane.roe@corp-mail.com or call +44 20 7946 0958.", "http://site.test/pii"),
        doc_row(english(51), "http://site.test/free-porn-videos.html"),
        doc_row(english(52) + "\n\nfuck this shit, fuck you cunt, shit.", "http://site.test/rant.html"),
    ]
    return rows


def rejects(out: Path, step: str) -> dict[str, str]:
    """url → drop reason of the documents step `step` wrote to out/removed/<step>/."""
    found = {}
    for path in (out / "removed" / step).glob("*.jsonl.gz"):
        with gzip.open(path, "rt") as f:
            for line in f:
                d = json.loads(line)
                found[d["metadata"]["url"]] = d["metadata"].get("filter_reason", "")
    return found


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    base = tmp_path_factory.mktemp("curate")
    docs = write_docset(corpus(), base / "docs", n_files=2)
    cfg = CurateConfig(tasks=2, workers=1, cross_run_dedup=True, dedup_index_dir=str(base / "index"))
    return base, cfg, run_curate(cfg, docs, base / "out")


@pytest.mark.slow
def test_curate_keeps_clean_english_and_audits_every_drop(curated):
    _, _, ref = curated
    out = ref.dir
    table = pq.read_table(out / ref.files[0]).schema
    assert table == SHARD_SCHEMA
    rows = [r for f in ref.files for r in pq.read_table(out / f).to_pylist()]
    kept = {r["url"] for r in rows}
    # Of each duplicate pair the first by URL survives (tasks.curate.curate.CURATION_ORDER), whichever came first in
    # the crawl files: copy-of-p0 sorts before p0 and near-p1 before p1, so the copies stand in for the originals.
    survivors = {"http://site.test/copy-of-p0.html", "http://site.test/near-p1.html", "http://site.test/pii"}
    assert kept == {f"http://site.test/p{s}.html" for s in SEEDS if s not in (0, 1)} | survivors
    assert ref.n_docs == len(rows) == 7
    assert rejects(out, "language") == {"http://site.test/de.html": "lang_de", "http://site.test/fr.html": "lang_fr"}
    assert rejects(out, "url") == {"http://site.test/free-porn-videos.html": "hard_blacklisted"}
    assert rejects(out, "toxicity") == {"http://site.test/rant.html": "badword_density"}
    assert set(rejects(out, "exact_dedup")) == {"http://site.test/p0.html"}
    assert set(rejects(out, "minhash_dedup")) == {"http://site.test/p1.html"}

    pii_row = next(r for r in rows if r["url"].endswith("/pii"))
    assert "<EMAIL>" in pii_row["text"] and "<PHONE>" in pii_row["text"] and "jane.roe" not in pii_row["text"]
    p1 = next(r for r in rows if r["url"].endswith("near-p1.html"))
    assert p1["minhash_cluster_size"] == 2 and p1["language"] == "en" and p1["language_score"] > 0.65
    assert all(r["token_count"] == len(r["text"].split()) and r["crawl_date"] for r in rows)

    stats = ref.manifest()["stats"]
    assert stats["docs_in"] == 13 and stats["docs_out"] == 7
    assert stats["steps"]["language"]["dropped"] == {"total": 2, "lang_de": 1, "lang_fr": 1}
    assert stats["steps"]["pii"]["pii_email"] == 1 and stats["steps"]["pii"]["pii_phone"] == 1
    assert stats["steps"]["output"]["tokens"] == sum(r["token_count"] for r in rows)


@pytest.mark.slow
def test_dedup_against_an_earlier_run(curated):
    base, cfg, _ = curated
    later = write_docset([doc_row(english(3), "http://other.test/again-p3.html"),
                          doc_row(english(60), "http://other.test/new.html")], base / "docs2")
    ref = run_curate(cfg, later, base / "out2")
    kept = {r["url"] for f in ref.files for r in pq.read_table(ref.dir / f).to_pylist()}
    assert kept == {"http://other.test/new.html"}
    assert ref.manifest()["stats"]["minhash_index_matches"] >= 1
    assert "http://other.test/again-p3.html" in rejects(ref.dir, "minhash_dedup")


class ExplodingError(Exception):
    """An exception pickle cannot rebuild (required constructor args): the classic cause of a hung Pool."""

    def __init__(self, code: int, why: str):
        super().__init__(f"{code}: {why}")


def explode(data, rank: int = 0, world_size: int = 1):
    raise ExplodingError(42, f"bad document on rank {rank}")


@pytest.mark.slow  # a process pool's start costs ~10-20 s on a loaded 2-core machine
@pytest.mark.timeout(120)
def test_worker_errors_surface_instead_of_hanging(tmp_path):
    with pytest.raises(RuntimeError, match=r"pipeline 'boom' failed.*ExplodingError: 42: bad document"):
        run_pipeline([explode], name="boom", tasks=2, workers=2, logging_dir=tmp_path / "logs")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_interrupted_run_resumes_to_identical_shards(tmp_path):
    docs = write_docset(corpus(), tmp_path / "docs", n_files=2)
    cfg = CurateConfig(tasks=2, workers=1)
    clean = run_shard(ShardConfig(target_shard_bytes=3000), run_curate(cfg, docs, tmp_path / "clean"),
                      tmp_path / "clean_shards")

    out = tmp_path / "crashed"
    script = ("import sys; from pathlib import Path; from tasks.curate.curate import CurateConfig, run_curate; "
              "from tasks.core.artifacts import DocSet; "
              f"run_curate(CurateConfig(tasks=2, workers=1), DocSet.model_validate_json(sys.argv[1]), Path({str(out)!r}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", script, docs.model_dump_json()], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "logs" / "exact_filter" / "completions" / "00000"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-pipeline: filter done, dedup stages not
    proc.wait()
    assert not (out / "manifest.json").exists()

    resumed = run_shard(ShardConfig(target_shard_bytes=3000), run_curate(cfg, docs, out), tmp_path / "shards")
    assert len(resumed.files) == len(clean.files) > 1
    assert [file_sha256(resumed.dir / f) for f in resumed.files] == [file_sha256(clean.dir / f) for f in clean.files]
    assert resumed.n_docs == clean.n_docs == 7


def test_profiles_and_overrides_reach_the_filters():
    from tasks.curate.config import heuristic_kwargs

    assert heuristic_kwargs(CurateConfig(), "c4_quality") == {"filter_no_terminal_punct": False}  # FineWeb's
    docs = CurateConfig(profile="docs", filter_overrides={"gopher_quality": {"min_doc_words": 10}})
    assert heuristic_kwargs(docs, "gopher_quality")["min_doc_words"] == 10
    assert heuristic_kwargs(docs, "gopher_quality")["max_non_alpha_words_ratio"] is None
    with pytest.raises(ValueError):
        CurateConfig(no_such_field=1)


def test_missing_model_file_is_named_before_any_work(tmp_path):
    docs = write_docset(corpus()[:2], tmp_path / "docs")
    with pytest.raises(FileNotFoundError, match="nowhere/lid.bin"):
        run_curate(CurateConfig(lid_model_path=str(tmp_path / "nowhere/lid.bin")), docs, tmp_path / "out")


def test_top_fraction_threshold_is_the_score_quantile(tmp_path):
    from tasks.curate.pipeline import _quality_threshold

    for rank, scores in enumerate([[0.1, 0.9, 0.5], [0.3, 0.7]]):
        with gzip.open(tmp_path / f"{rank:05d}.jsonl.gz", "wt") as f:
            f.writelines(json.dumps({"text": "t", "metadata": {"quality_score": s}}) + "\n" for s in scores)
    assert _quality_threshold(CurateConfig(quality_threshold=0.42), tmp_path) == 0.42
    keep_top = _quality_threshold(CurateConfig(quality_top_fraction=0.4), tmp_path)
    assert sum(s >= keep_top for s in [0.1, 0.9, 0.5, 0.3, 0.7]) == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_cluster_gives_the_local_result_even_when_a_worker_is_killed(tmp_path, monkeypatch):
    """A real Ray head (2 CPUs, loopback); the first rank worker seen running is SIGKILLed mid-task, datatrove
    resubmits its ranks, and the shards are still byte-identical to the local executor's."""
    import threading

    from ray_cluster import LOOPBACK_ONLY, processes_titled, ray_head

    for name, value in LOOPBACK_ONLY.items():  # read by Ray at import time
        monkeypatch.setenv(name, value)
    import ray

    docs = write_docset(corpus(), tmp_path / "docs", n_files=2)
    local = run_curate(CurateConfig(tasks=2, workers=2), docs, tmp_path / "local")
    killed: list[int] = []
    with ray_head(num_cpus=2) as (address, head_pid):
        monkeypatch.setenv("RAY_ADDRESS", address)
        done = threading.Event()

        def kill_first_rank_worker():
            while not done.is_set() and not killed:
                for pid in processes_titled("ray::RankWorker.run_for_rank", head_pid):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
                time.sleep(0.02)

        killer = threading.Thread(target=kill_first_rank_worker, daemon=True)
        killer.start()
        try:
            on_ray = run_curate(CurateConfig(executor="ray", tasks=2, workers=2), docs, tmp_path / "ray")
            # ran on our head, over loopback only
            assert ray.get_runtime_context().gcs_address == address
            assert ray.cluster_resources()["CPU"] == 2
        finally:
            done.set()
            killer.join()
            ray.shutdown()
    assert killed, "no Ray rank worker was seen running"
    assert on_ray.files == local.files and len(local.files) >= 1
    assert [file_sha256(on_ray.dir / f) for f in on_ray.files] == [file_sha256(local.dir / f) for f in local.files]
    assert on_ray.n_docs == local.n_docs == 7
