"""Pure torch models, the tokenizer wrapper and MLflow model packaging, in subpackages by job. Imports point down:
packaging -> inference -> weights -> architectures | optimisation | distributed -> decoding | text | hardware
(an import-linter contract in pyproject.toml).
"""
