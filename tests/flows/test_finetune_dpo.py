"""Preference tuning through the real Prefect flow: from a registered chat model (`models:/lmforge@champion`) with
label-free pairs and a small HH-RLHF file to a gated `lmforge-dpo` version whose lineage leads back to its start."""

import json
from pathlib import Path

import pytest
from test_finetune import registered_base

HH = [{"chosen": f"\n\nHuman: Tell me about fmt{i}.\n\nAssistant: The fmt{i} module reads files.",
       "rejected": f"\n\nHuman: Tell me about fmt{i}.\n\nAssistant: fmt{i} fmt{i} fmt{i} fmt{i}"} for i in range(8)]


@pytest.mark.slow
def test_dpo_registers_a_gated_version_with_lineage(prefect_server, lmforge_home: Path, tmp_path: Path):
    from flows.dpo import DPOFinetuneConfig, finetune_dpo
    from tasks.core.artifacts import CheckpointRef, load_done
    from tasks.core.tracking import TrackingConfig, client
    from tasks.evaluate.evaluate import EvalConfig
    from tasks.finetune.dpo import DPOConfig
    from tasks.finetune.pref_data import PreferenceDataConfig
    from tasks.finetune.sft_data import SFTDataConfig
    from tasks.registry.lineage import lineage

    tracking = TrackingConfig()
    registered_base(tmp_path / "base", tracking)
    hh = tmp_path / "hh.jsonl"
    hh.write_text("".join(json.dumps(row) + "\n" for row in HH))
    cfg = DPOFinetuneConfig(
        base="models:/lmforge@champion",
        conversations=SFTDataConfig(seed_set=False, min_answer_chars=40, follow_up_fraction=0.0),
        data=PreferenceDataConfig(files=[str(hh)], max_spin_pairs=12, spin_max_tokens=6, val_fraction=0.3),
        dpo=DPOConfig(beta=0.5, max_steps=10, batch_size=4, lr=3e-3, warmup_steps=0, max_len=96, device="cpu",
                      threads=1),
        evaluate=EvalConfig(prompts=[], device="cpu", max_val_tokens=2000),
    )
    version = finetune_dpo(cfg)
    assert version.name == "lmforge-dpo"

    tags = client(tracking).get_model_version("lmforge-dpo", version.version).tags
    assert tags["lmforge.gate.metric"] == "pref_reward_acc" and tags["lmforge.gate.reason"]
    assert "pref_reward_acc" in tags["lmforge.gate.base"]  # the decision against the start, recorded either way
    assert float(tags["lmforge.metric.pref_reward_acc"]) > 0.5  # the start scores 0.5 (chance) on its own pairs
    assert tags["lmforge.gate.decision"] == "promoted" and version.alias == "champion", tags["lmforge.gate.reason"]
    assert "lmforge.metric.val_bpb" in tags and "lmforge.metric.pref_kl" in tags

    found = lineage(tracking, "lmforge-dpo", version.alias)
    start = lineage(tracking, "lmforge", "champion")
    assert found.parent == f"models:/lmforge/{start.version}"
    assert found.tokens == start.tokens  # evaluated on the start's val split
    run_tags = client(tracking).get_run(version.run_id).data.tags
    assert found.checkpoint == load_done(Path(run_tags["lmforge.dpo.path"]), CheckpointRef)
    stats = json.loads((Path(run_tags["lmforge.preference-data.path"]) / "manifest.json").read_text())["stats"]
    assert stats["sources"]["file:hh.jsonl"] == 8 and stats["sources"]["spin"] > 0

    assert finetune_dpo(cfg) == version  # a rerun reuses every stage and the registered version
