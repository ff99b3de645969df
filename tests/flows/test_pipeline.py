"""End to end: the tiny_cpu preset, scaled down, through the real Prefect flow on a tiny site served on loopback."""

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from demo_run import SCALED_DOWN
from tiny_corpus import write_site

from flows.presets import load_config
from tasks.core.schema import SHARD_SCHEMA


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(prefect_server, lmforge_home: Path, tmp_path: Path):
    from flows.pipeline import pipeline
    from models.text.tokenizer import Tokenizer
    from tasks.core.tracking import client

    site = tmp_path / "site"
    write_site(site, n_pages=40)
    cfg = load_config("tiny_cpu", overrides=[f"crawl.local_site.roots={{tiny: '{site}'}}", *SCALED_DOWN])

    state = pipeline(cfg, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()

    runs = lmforge_home / "runs"
    shards = sorted((runs / "shard").glob("*/shard_*.parquet"))
    assert shards, "no Parquet shards written"
    for shard in shards:
        schema = pq.read_schema(shard)
        assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in SHARD_SCHEMA]
    n_docs = sum(pq.read_metadata(s).num_rows for s in shards)
    assert 20 <= n_docs <= 41  # 40 pages + index; curation may drop the link-only index page

    tokenizer = Tokenizer.load(next((runs / "tokenize").glob("*/tokenizer.json")))
    text = "The quiet river carries the golden lantern near the old bridge."
    assert tokenizer.decode(tokenizer.encode(text)) == text

    mlflow = client(cfg.tracking)
    champion = mlflow.get_model_version_by_alias(cfg.registry.model_name, "champion")
    assert f"models:/{cfg.registry.model_name}/{champion.version}" == summary.model_uri
    metrics = mlflow.get_run(summary.mlflow_run_id).data.metrics
    val_loss = metrics["evaluate/val_loss"]
    assert math.isfinite(val_loss) and val_loss < math.log(512)
    assert metrics["evaluate/val_bpb"] > 0
    assert metrics["crawl/outcomes/fetched"] >= 40
    assert dict(summary.rows)["train steps / time"].startswith(f"{cfg.train.max_steps} / ")
    assert "scorer version" in champion.description  # the card lists the pins the evaluation was scored under

    # A rerun of the unchanged pipeline is served from the stage manifests: no stage recomputes.
    manifests = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/manifest.json")}
    again = pipeline(cfg, return_state=True)
    assert again.is_completed()
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/*/manifest.json")} == manifests
