"""Stage logic, one package per pipeline stage in pipeline order: collect → curate → shard → tokenize → train →
evaluate → finetune → registry → serve, plus `core` for what they share. Each package's docstring names its entry
point (a plain `run_…` function and a thin Prefect task), its config and its internal modules; other stages and
flows use entry points only (import-linter contracts in pyproject.toml)."""
