"""Chat fine-tuning through the real Prefect flow: from a registered base (`models:/lmforge@champion`) to a
registered `lmforge-chat` version, then exported to HF format from the registry and loaded with transformers."""

import json
from pathlib import Path

import pytest

# Documentation-like text: Sphinx headings (trailing ¶) with prose under them, from which SFT data is derived.
SECTION = """{name} — Tools for the {name} format¶
The {name} module reads and writes files in the {name} format. It is part of the standard library.
Reading files¶
Use the load function of the {name} module to read a file object. It returns dictionaries and lists.
"""
FILLER = "The river carries the old letter to the quiet village by the bridge. " * 8


def write_curated(root: Path):
    """A finished shard stage: curated Parquet (`SHARD_SCHEMA`) with a manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.core.artifacts import ShardSet, finish_stage
    from tasks.core.schema import SHARD_SCHEMA

    texts = [SECTION.format(name=f"fmt{i}") for i in range(6)] + [f"Page {i}. {FILLER}" for i in range(40)]
    rows = [{"id": f"doc-{i}", "text": t, "url": f"http://127.0.0.1/{i}", "domain": "127.0.0.1",
             "crawl_date": "2024-01-01T00:00:00Z", "language": "en", "language_score": 0.99, "quality_score": None,
             "minhash_cluster_size": 1, "token_count": len(t.split()), "source_warc": None, "source_record_id": None,
             "source": "crawl"}
            for i, t in enumerate(texts)]
    root.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SHARD_SCHEMA), root / "shard_00000.parquet")
    ref = ShardSet(path=str(root), files=["shard_00000.parquet"], n_docs=len(texts),
                   n_bytes=sum(len(t.encode()) for t in texts))
    return finish_stage(root, ref)


def registered_base(root: Path, tracking) -> None:
    """A tiny base model registered as lmforge@champion, with shard/tokenize/train stages logged on its run."""
    from lm_fixtures import checkpoint_ref, tiny_gpt, write_checkpoint

    from models.text.tokenizer import Tokenizer
    from tasks.core.artifacts import EvalReport, finish_stage
    from tasks.core.tracking import log_stage, open_run
    from tasks.registry.register import RegisterConfig, run_register
    from tasks.tokenize.tokenize import TokenizeConfig, run_tokenize

    shards = write_curated(root / "shards")
    cfg = TokenizeConfig(vocab_size=512, val_fraction=0.1, workers=1, min_bytes_per_token=0.0)
    tokens = run_tokenize(cfg, shards, root / "tokens")
    tokenizer = Tokenizer.load(tokens.dir / tokens.tokenizer_file)
    model = tiny_gpt(tokenizer.vocab_size, seq_len=128)
    step_dir = write_checkpoint(root / "train", model, tokenizer)
    checkpoint = finish_stage(root / "train", checkpoint_ref(step_dir, model))
    report_dir = root / "eval"
    report_dir.mkdir()
    (report_dir / "report.json").write_text(json.dumps({"metrics": {"val_bpb": 9.0}, "eval_sets": {}, "samples": []}))
    report = finish_stage(report_dir, EvalReport(path=str(report_dir), metrics={"val_bpb": 9.0}), files=["report.json"])
    run_id = open_run(tracking, "base", {}, {})
    for stage, ref in (("shard", shards), ("tokenize", tokens), ("train", checkpoint)):
        log_stage(tracking, run_id, stage, ref)
    assert run_register(RegisterConfig(), tracking, run_id, checkpoint, report).alias == "champion"


@pytest.mark.slow
def test_finetune_registers_a_chat_model_that_exports(prefect_server, lmforge_home: Path, tmp_path: Path):
    import torch
    import transformers

    from flows.finetune import CHAT_PROMPTS, FinetuneConfig, finetune
    from models.weights.checkpoint import load_model, read_sidecar
    from tasks.core.artifacts import CheckpointRef, load_done
    from tasks.core.tracking import TrackingConfig, client
    from tasks.evaluate.evaluate import EvalConfig
    from tasks.finetune.sft import SFTConfig
    from tasks.finetune.sft_data import SFTDataConfig
    from tasks.registry.export import export_hf
    from tasks.registry.lineage import lineage

    tracking = TrackingConfig()
    registered_base(tmp_path / "base", tracking)
    cfg = FinetuneConfig(
        data=SFTDataConfig(min_answer_chars=40, follow_up_fraction=0.0),
        sft=SFTConfig(max_steps=8, batch_size=4, device="cpu", threads=1, eval_every=0),
        evaluate=EvalConfig(prompts=CHAT_PROMPTS[:1], chat_prompts=True, max_new_tokens=4, device="cpu",
                            max_val_tokens=2000),
    )
    version = finetune(cfg)
    assert version.name == "lmforge-chat" and version.alias == "champion"

    tags = client(tracking).get_run(version.run_id).data.tags
    tuned = load_done(Path(tags["lmforge.sft.path"]), CheckpointRef)
    base = lineage(tracking, "lmforge", "champion")
    sidecar = read_sidecar(tuned.dir / tuned.checkpoint)
    assert sidecar["base_checkpoint"]["path"] == str(base.checkpoint.dir / base.checkpoint.checkpoint)
    data_stats = json.loads((Path(tags["lmforge.sft-data.path"]) / "manifest.json").read_text())["stats"]
    assert data_stats["sources"]["corpus"]["kept"] == 12 and data_stats["sources"]["seed"]["kept"] > 20
    assert lineage(tracking, "lmforge-chat", "champion").tokens == base.tokens  # evaluated on the base's val split

    assert finetune(cfg) == version  # a rerun reuses every stage and the registered version

    out = export_hf("models:/lmforge-chat@champion", tmp_path / "hf", tracking)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ours, _, _ = load_model(tuned.dir / tuned.checkpoint)
    idx = torch.randint(0, ours.config.vocab_size, (1, 32))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() < 1e-4
