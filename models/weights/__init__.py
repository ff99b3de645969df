"""Weights on disk: lmforge's training checkpoints (`checkpoint`), open weights imported from Hugging
Face or GGUF (`hf_import`), and the atomic JSON writes and file hashes they and the stage manifests share
(`files`).
"""
