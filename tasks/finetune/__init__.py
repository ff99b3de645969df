"""Fine-tune: chat SFT, classification heads and generative task fine-tuning on top of a pretrained checkpoint.

Entry points, each a plain `run_…` function and a Prefect task: `sft_data.py` (`run_sft_data`, task `sft_data`,
`SFTDataConfig`: conversations from the corpus, the seed set and user files), `sft.py` (`run_sft`, task `sft`,
`SFTConfig`, and `resolve_sft_base`), `classify.py` (`run_classify`, task `classify`, `ClassifyConfig`,
`register_classifier`), `gen_task.py` (`run_gen_task`, task `gen_task`, `GenTaskConfig`), `pref_data.py`
(`run_preference_data`, task `preference_data`, `PreferenceDataConfig`: DPO pairs from HH-RLHF/TRL files or built
without labels), `dpo.py` (`run_dpo`, task `dpo`, `DPOConfig`), `pref_eval.py` (`run_preference_eval`, task
`preference_eval`, `preference_metrics`: held-out preference accuracy, margin and KL to the reference).
Internal modules: `classify_metrics` (accuracy, macro-F1, confusion matrix), `records` (rows of a user's JSONL or
Parquet task file).
"""
