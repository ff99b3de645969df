"""Tokenize: train a byte-level BPE tokenizer (or reuse one) and write llm.c-format token shards, split by document.

Entry point (`tokenize.py`): `run_tokenize(cfg, shards, out) -> TokenSet`, and the Prefect task
`tokenize(cfg, shards)`. Config: `tokenize.TokenizeConfig`. The token-shard format itself is `tasks.core.tokens`.
"""
