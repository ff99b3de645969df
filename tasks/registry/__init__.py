"""Registry: package a checkpoint as an MLflow model, register it, and move aliases through the promotion gate.

Entry point (`register.py`): `run_register(...) -> ModelVersionRef`, the Prefect task `register`, `RegisterConfig`
and the gate (`gate_decision`, `champion_scores`); `ModelPackage` says what a version carries (the chat model, a
classifier), so every model registers through the one gate. Also public: `resolve.py` (registry URIs and stage dirs to
checkpoints: `resolve_checkpoint`, `base_ref`), `lineage.py` (from a model version back to its data), `export.py`
(Hugging Face format), `significance.py` (the gate's paired bootstrap, pure). Internal module: `model_card`.
"""
