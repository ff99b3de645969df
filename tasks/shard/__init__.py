"""Shard: curated documents into fixed-schema, zstd Parquet shards with a dataset card.

Entry point (`shard.py`): `run_shard(cfg, docs, out) -> ShardSet`, and the Prefect task `shard(cfg, docs)`.
Config: `shard.ShardConfig`. Internal module: `dataset_card` (the card written beside the shards).
"""
