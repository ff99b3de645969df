"""Continuous retraining through the real flow: a first run trains a champion, a rerun on an unchanged site ends
early, a run after pages change continues the champion and goes through the promotion gate."""

import os
from pathlib import Path

import pytest
from test_pipeline import SCALED_DOWN
from tiny_corpus import paragraph, write_site

from flows.presets import load_config


@pytest.mark.slow
def test_retrain_nothing_new_then_changed_pages(prefect_server, lmforge_home: Path, tmp_path: Path):
    import random

    from flows.retrain import RetrainConfig, retrain
    from tasks.core.tracking import client

    site = tmp_path / "site"
    pages = write_site(site, n_pages=30, seed=5)
    base = load_config("tiny_cpu", overrides=[f"crawl.local_site.roots={{tiny: '{site}'}}", *SCALED_DOWN])

    first = retrain(RetrainConfig(pipeline=base, snapshot="first"))
    assert first.status == "promoted" and first.new_documents > 0

    unchanged = retrain(RetrainConfig(pipeline=base, snapshot="unchanged"))
    assert unchanged.status == "nothing-new" and unchanged.model_uri is None

    rng = random.Random(11)
    for page in pages[:6]:
        html = page.read_text().replace("</article>", f"<p>{paragraph(rng, 12)}</p></article>")
        page.write_text(html)
        later = page.stat().st_mtime + 5  # Last-Modified has 1 s resolution: make the change visible
        os.utime(page, (later, later))
    changed = retrain(RetrainConfig(pipeline=base, snapshot="changed"))
    assert changed.status in ("promoted", "refused")
    assert 1 <= changed.new_documents <= 7

    mlflow = client(base.tracking)
    version = mlflow.get_model_version(base.registry.model_name, changed.model_uri.rsplit("/", 1)[1])
    assert version.tags["lmforge.gate.decision"] in ("promoted", "refused")
    assert version.tags["lmforge.gate.champion_version"] == first.model_uri.rsplit("/", 1)[1]
    from tasks.registry.lineage import lineage

    found = lineage(base.tracking, base.registry.model_name, version.tags["lmforge.gate.alias"])
    assert found.run_id == version.run_id
    assert found.checkpoint.manifest()["config"]["init_from"]  # continued from the champion, not from scratch
