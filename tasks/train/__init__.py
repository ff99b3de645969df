"""Train: the GPT-style model on token shards, checkpointed and resumable; one process, or DDP/FSDP under torchrun.

Entry point (`train.py`): `run_train(cfg, tokens, out) -> CheckpointRef`, the Prefect task `train(cfg, tokens)`, and
`python -m tasks.train` for torchrun. Config and lr schedule: `config.py`; a run's state and its step / evaluate /
save functions: `state.TrainRun`. `sweep.py` holds hyper-parameter sweeps over
`TrainConfig` (the `sweep` flow's trials). Internal module: `helpers` (metric log, MLflow hook, eval loss).
"""
