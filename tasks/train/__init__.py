"""Train: the GPT-style model on token shards, checkpointed and resumable; one process, or DDP/FSDP under torchrun.

Entry point (`train.py`): `run_train(cfg, tokens, out) -> CheckpointRef`, the Prefect task `train(cfg, tokens)`, and
`python -m tasks.train` for torchrun. Config: `config.py`. The training kernel every method runs on (pretraining here,
SFT, DPO and the classification head in `tasks.finetune`): `loop.TrainLoop` with `schedule.Schedule`; what
pretraining supplies to it: `state.TrainRun`. `sweep.py` holds hyper-parameter sweeps over `TrainConfig` (the
`sweep` flow's trials). Internal module: `helpers` (metric log, MLflow hook, eval loss).
"""
