"""Ablate: compare data recipes (collect/curate overrides of one base config) by training small proxy models on each.

Entry points: `plan.proxy_train_config` (the fixed token budget and seed of one arm), `results.log_arm` (Prefect
task: one MLflow child run per recipe × seed), `results.write_ablation` (Prefect task: the table, the chart, the
verdict). Config: `plan.Recipe`, composed by `flows.ablate.AblationConfig`. The flow (`flows/ablate.py`) runs the
stages themselves through their normal tasks, so stages two recipes share come from the stage cache.
"""
