"""lmforge's DPO numbers equal TRL's `DPOTrainer` (the library that owns the method) on the same models, pairs and
beta: the loss, the chosen and rejected rewards, their margin and accuracy, and the completion log-probs.

Two tiny random Hugging Face Llama models (policy and reference) are imported into lmforge (`run_import`, whose
logits equal transformers'); TRL gets the HF models, the HF tokenizer with the same ChatML template and the pairs in
its conversational format, so it renders and tokenizes them itself. TRL reports batch means (its `evaluate`
metrics), so one eval batch holds every pair."""

from pathlib import Path

import pytest
import torch

PAIRS = [
    {"prompt": [{"role": "user", "content": "What is Debian?"}],
     "chosen": "Debian is a free operating system.", "rejected": "A river."},
    {"prompt": [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "A language?"}],
     "chosen": "Python", "rejected": "The market by the old village."},
    {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "def f(x)?"}],
     "chosen": "def f(x):\n    return x * 2", "rejected": "Ünïcödé"},
]
BETA = 0.3


def test_loss_rewards_and_margins_equal_trl(tmp_path: Path):
    from datasets import Dataset
    from pretrained_fixtures import save_tiny_hf_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from models.optimisation.dpo import dpo_loss
    from models.weights.checkpoint import load_model
    from tasks.finetune.dpo import encode_pair, pair_logps
    from tasks.pretrained.importer import ImportConfig, run_import

    dirs = {}
    for name, seed in (("policy", 0), ("reference", 1)):
        save_tiny_hf_model(tmp_path / name, "llama", seed=seed, context=128)
        ref = run_import(ImportConfig(source=str(tmp_path / name)), tmp_path / f"{name}-import")
        dirs[name] = ref.dir / ref.checkpoint
    policy, tokenizer, _ = load_model(dirs["policy"])
    reference, _, _ = load_model(dirs["reference"])
    encoded = [encode_pair(tokenizer, pair, 128, 127) for pair in PAIRS]
    chosen, rejected = pair_logps(policy, encoded, tokenizer.pad_id, len(PAIRS), "cpu")
    ref_chosen, ref_rejected = pair_logps(reference, encoded, tokenizer.pad_id, len(PAIRS), "cpu")
    ours = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, BETA)

    rows = [{"prompt": p["prompt"], "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in PAIRS]
    dataset = Dataset.from_list(rows)
    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "policy")
    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=BETA, loss_type=["sigmoid"], bf16=False,
                     use_cpu=True, per_device_eval_batch_size=len(PAIRS), max_length=None, report_to="none",
                     precompute_ref_log_probs=False)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tmp_path / "policy", dtype=torch.float32),
        ref_model=AutoModelForCausalLM.from_pretrained(tmp_path / "reference", dtype=torch.float32),
        args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=hf_tokenizer,
    )
    theirs = trainer.evaluate()

    margins = ours.chosen_rewards - ours.rejected_rewards
    assert abs(ours.rejected_rewards.mean()) > 1e-2 and abs(margins.mean()) > 1e-2  # a case where the numbers matter
    expected = {
        "eval_loss": ours.loss.item(),
        "eval_rewards/chosen": ours.chosen_rewards.mean().item(),
        "eval_rewards/rejected": ours.rejected_rewards.mean().item(),
        "eval_rewards/margins": margins.mean().item(),
        "eval_rewards/accuracies": (margins > 0).float().mean().item(),
        "eval_logps/chosen": chosen.mean().item(),
        "eval_logps/rejected": rejected.mean().item(),
    }
    for key, value in expected.items():
        assert theirs[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
