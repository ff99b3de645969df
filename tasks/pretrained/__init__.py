"""Pretrained: import an open-weights Llama-family model as the base that the pipeline adapts (continued
pretraining, SFT) instead of training from scratch.

Entry point (`importer.py`): `run_import(cfg, out) -> CheckpointRef` (reads the source, then
`save_import(pretrained, cfg, out)` writes the checkpoint), and the Prefect task `import_base(cfg)`.
Config: `importer.ImportConfig`. The model code it uses lives in `models.weights.hf_import` (source formats, config
mapping).
"""
