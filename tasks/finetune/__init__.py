"""Fine-tune: chat SFT, classification heads and generative task fine-tuning on top of a pretrained checkpoint.

Entry points, each a plain `run_…` function and a Prefect task: `sft_data.py` (`run_sft_data`, task `sft_data`,
`SFTDataConfig`: conversations from the corpus, the seed set and user files), `sft.py` (`run_sft`, task `sft`,
`SFTConfig`, and `resolve_sft_base`), `classify.py` (`run_classify`, task `classify`, `ClassifyConfig`,
`register_classifier`), `gen_task.py` (`run_gen_task`, task `gen_task`, `GenTaskConfig`).
Internal modules: `classify_metrics` (accuracy, macro-F1, confusion matrix), `records` (rows of a user's JSONL or
Parquet task file).
"""
