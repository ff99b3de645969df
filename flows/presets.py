"""Named recipes: functions returning a `PipelineConfig`, each a copy of a base with overrides.

`tiny_cpu` is what `make demo` and the end-to-end test run (the demo corpus on 2 CPU cores in minutes);
`gpt_124m` is the GPT-2-small-sized GPU recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from flows.config import PipelineConfig, apply_sources
from tasks.evaluate.safety import SAFETY_PROMPTS

# Real documentation sites from Debian packages (infra/install_corpus.sh), served on 127.0.0.1 during the crawl.
DEMO_SITES = {
    "python": "/usr/share/doc/python3.11/html",
    "debian-reference": "/usr/share/debian-reference",
}


def tiny_cpu() -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "tiny_cpu",
            "crawl": {"local_site": {"roots": DEMO_SITES}},
            # The demo corpus is code-heavy documentation: FineWeb's thresholds keep 68 of 591 pages, mostly
            # dropping on Gopher's alphabetic-word ratio; lid.176 scores English pages full of code below 0.65.
            "curate": {"profile": "docs", "language_threshold": 0.4},
            "tokenize": {"vocab_size": 4096},
            # Sized for 2 CPU cores: ~3 M parameters, a 4-minute budget (the lr schedule decays by time too).
            "train": {
                "model": {"n_layer": 4, "n_embd": 192, "n_head": 4, "n_kv_head": 2, "seq_len": 256},
                "batch_size": 8,
                "max_steps": 1000,
                "max_seconds": 240,
                "warmup_steps": 20,
                "lr": 3e-3,
                "eval_every": 100,  # val points for the training-curve figure (~2 s each)
                "checkpoint_every": 250,
            },
            # The model card reports toxicity and PII found in completions of a fixed prompt set.
            "evaluate": {"safety_prompts": list(SAFETY_PROMPTS)},
        }
    )


def gpt_124m() -> PipelineConfig:
    """GPT-2-small size on one GPU: 123.6 M parameters, 855 MFLOP per token, Muon + warmup-stable-decay."""
    base = tiny_cpu().model_dump(mode="json")
    base.update(
        name="gpt_124m",
        tokenize={**base["tokenize"], "vocab_size": 50304},
        train={
            "model": {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_kv_head": 12, "seq_len": 1024,
                      "qk_norm": True, "tie_embeddings": True},
            "batch_size": 32,
            "tokens_per_step": 524288,
            "optimizer": "muon",
            "muon_lr": 0.02,
            "lr": 3e-3,
            "warmup_steps": 200,
            "schedule": "wsd",
            "max_steps": 5000,
            "compile": True,
            "dtype": "auto",
            "checkpoint_every": 500,
            "eval_every": 250,
        },
    )
    return PipelineConfig.model_validate(base)


PRESETS: dict[str, Callable[[], PipelineConfig]] = {"tiny_cpu": tiny_cpu, "gpt_124m": gpt_124m}


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
