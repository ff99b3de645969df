"""Curate: datatrove filtering (URL, language, Gopher/C4/FineWeb quality, toxicity), exact and MinHash dedup, PII.

Entry point (`curate.py`): `run_curate(cfg, docs, out) -> DocSet`, and the Prefect task `curate(cfg, docs)`.
Config: `config.CurateConfig` (profiles and per-filter overrides). The fasttext quality classifier that curation can
use is trained by its own stage (`quality_stage.py`: `run_quality`, task `quality_classifier`, `QualityTrainConfig`).

Internal modules: `pipeline` (the datatrove pipelines and their stats), `filters` (lmforge's datatrove steps),
`quality` (fasttext classifier training and scoring).
"""
