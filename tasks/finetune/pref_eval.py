"""Preference evaluation: how a model ranks held-out preference pairs, and how far it moved from its reference.

One function (`preference_metrics`) gives every number, for the starting model and for the DPO model alike, so the
gate, the bench and the registry report the same definitions:
- `pref_reward_acc`: share of pairs whose implicit reward `beta * log(pi / pi_ref)` is higher for the chosen answer
  (a tie counts half, so the reference itself scores exactly 0.5: chance);
- `pref_logp_acc`: share where the model itself gives the chosen answer the higher log-probability (no reference);
- `pref_margin`: mean implicit reward margin (chosen minus rejected); 0 for the reference;
- `pref_kl`: mean per-token KL(pi || pi_ref) over the completion tokens of the held-out pairs (`models.optimisation.dpo.
  completion_kl`); 0 for the reference.

`run_preference_eval` adds them (with an `eval_sets["pref"]` fingerprint of the pairs and the reference) to an
evaluate stage's report, so the promotion gate (`tasks.registry.register`) sees one EvalReport per model.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from prefect import task

from tasks.core.artifacts import CheckpointRef, EvalReport, finish_stage, load_done, reset_dir, stage_dir
from tasks.evaluate.config import VAL_DOCS, EvalConfig
from tasks.evaluate.items import ITEMS_FILE
from tasks.finetune.dpo import DPOConfig, encode_pair, pair_batch
from tasks.finetune.pref_data import PreferenceSet, load_pairs
from tasks.finetune.sft_data import VAL


def preference_metrics(model, reference, tokenizer, pairs: list[dict[str, Any]], beta: float, max_len: int,
                       max_prompt_len: int, batch_size: int = 4, device: str = "cpu") -> dict[str, float]:
    """The `pref_*` metrics (module doc) of `model` against `reference` on `pairs` (both in eval mode). One forward
    of each model per batch gives both the log-probs and the KL; `reference is model` costs one forward."""
    import torch

    from models.optimisation.dpo import completion_kl, token_logprobs

    if not pairs:
        return {}
    max_len = min(max_len, model.config.seq_len)
    encoded = [encode_pair(tokenizer, p, max_len, min(max_prompt_len, max_len - 1)) for p in pairs]
    logps: dict[str, list] = {"chosen": [], "rejected": [], "ref_chosen": [], "ref_rejected": []}
    kl_sum, kl_tokens = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            ids, completion = (t.to(device) for t in pair_batch(encoded[i : i + batch_size], tokenizer.pad_id))
            log_p = torch.log_softmax(model(ids[:, :-1])[0], dim=-1)  # (2B, T-1, V)
            log_q = log_p if reference is model else torch.log_softmax(reference(ids[:, :-1])[0], dim=-1)
            for prefix, log_probs in (("", log_p), ("ref_", log_q)):
                c, r = token_logprobs(log_probs, ids, completion).chunk(2)
                logps[f"{prefix}chosen"].append(c)
                logps[f"{prefix}rejected"].append(r)
            if reference is not model:
                total, count = completion_kl(log_p, log_q, completion)
                kl_sum, kl_tokens = kl_sum + float(total.sum()), kl_tokens + float(count.sum())
    chosen, rejected, ref_chosen, ref_rejected = (torch.cat(v) for v in logps.values())
    margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))  # (N,)
    return {
        "pref_reward_acc": float(((margin > 0).float() + 0.5 * (margin == 0).float()).mean()),
        "pref_logp_acc": float(((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).mean()),
        "pref_margin": float(margin.mean()),
        "pref_kl": kl_sum / kl_tokens if kl_tokens else 0.0,
        "pref_pairs": float(len(pairs)),
    }


def run_preference_eval(cfg: DPOConfig, model_ref: CheckpointRef, reference_ref: CheckpointRef, data: PreferenceSet,
                        report: EvalReport, out: Path) -> EvalReport:
    """`report` (an evaluate stage of `model_ref`) plus the `pref_*` metrics on the held-out pairs of `data`."""
    from models.hardware.devices import resolve_device
    from models.weights.checkpoint import load_model

    t0 = time.time()
    if any(out.iterdir()):
        reset_dir(out)
    device = str(resolve_device(cfg.device))
    model, tokenizer, _ = load_model(model_ref.dir / model_ref.checkpoint, device=device)
    same = model_ref.manifest_sha256 == reference_ref.manifest_sha256
    reference = model if same else load_model(reference_ref.dir / reference_ref.checkpoint, device=device)[0]
    held_out = load_pairs(data, VAL)
    if not held_out:  # the gate would have nothing to decide on
        raise ValueError(f"{data.dir}: no held-out preference pairs; raise preference val_fraction or add pairs")
    found = preference_metrics(model, reference, tokenizer, held_out, cfg.beta, cfg.max_len,
                               cfg.max_prompt_len, cfg.batch_size, device)
    saved = json.loads((report.dir / "report.json").read_text())
    saved["metrics"] = {**saved["metrics"], **found}
    # implicit rewards depend on the pairs and the reference: only those compare
    saved.setdefault("eval_sets", {})["pref"] = f"{data.manifest_sha256[:32]}{reference_ref.manifest_sha256[:32]}"
    (out / "report.json").write_text(json.dumps(saved, indent=2, sort_keys=True))
    files = ["report.json"]
    for name in ("report.md", VAL_DOCS, ITEMS_FILE):  # the eval set and per-item results travel with the report
        if (report.dir / name).is_file():
            shutil.copyfile(report.dir / name, out / name)
            files.append(name)
    ref = EvalReport(path=str(out), metrics=saved["metrics"], samples=report.samples)
    # the evaluate config stays the report's config: `tasks.evaluate.rescore` re-runs it on another model
    eval_cfg = EvalConfig.model_validate(report.manifest()["config"])
    return finish_stage(out, ref, config=eval_cfg, entry=run_preference_eval, stats=found, files=files, started=t0)


@task(name="preference-eval", retries=1)
def preference_eval(cfg: DPOConfig, model_ref: CheckpointRef, reference_ref: CheckpointRef, data: PreferenceSet,
                    report: EvalReport) -> EvalReport:
    out = stage_dir("preference-eval", cfg, model_ref, reference_ref, data, report, entry=run_preference_eval)
    return load_done(out, EvalReport) or run_preference_eval(cfg, model_ref, reference_ref, data, report, out)
