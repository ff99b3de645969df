"""Evaluate: held-out loss, perplexity and bits per byte, downstream tasks, sample generations and safety probes.

Entry point (`evaluate.py`): `run_evaluate(cfg, ckpt, tokens, out) -> EvalReport`, the Prefect task `evaluate`,
`evaluate_model` (any loaded model, for the CLI) and `rescore` (a champion on a challenger's eval set, for the gate).
Config: `evaluate.EvalConfig`. `safety.py` is public for its fixed prompt set (`SAFETY_PROMPTS`), `core.py` for
`core_item_texts` (the items CORE scores, for the contamination check), `items.py` for the per-item results,
`pins.py` for what a report is pinned to (file hashes, `SCORER_VERSION`, baseline versions).

Internal modules: `metrics` (scoring token streams and files), `samples` (generations), `downstream` (HellaSwag,
ARC, LAMBADA), `lm_eval_adapter` (an lm-evaluation-harness model class).
"""
