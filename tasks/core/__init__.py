"""What every stage shares; no stage logic lives here.

- `artifacts`: stage directories keyed by config + inputs + code, `manifest.json` written last, and the typed refs
  stages pass each other (`DocSet`, `ShardSet`, `TokenSet`, `CheckpointRef`, `EvalReport`, `ModelVersionRef`).
- `stage_code`: which source a stage runs (its entry function's module and what that imports), hashed into its
  cache key.
- `schema`: the Parquet schemas of crawled documents and curated shards.
- `tokens`: the llm.c `.bin` token-shard format, the training loader and eval batches.
- `tracking`: MLflow (`TrackingConfig`, runs, stage metrics); `report`: the flow-level run summary and Prefect artifacts.
- `executors`: datatrove's local / Ray / Slurm executors behind one call.
- `pii`, `toxicity`: the scrubber and bad-word check used by curation, SFT data, evaluation and serving; `pii_detect`
  holds the scrubber's detectors, one per kind (libphonenumber, IIN + Luhn, mod-97, ipaddress), phones in
  `pii_phone`.
"""
