"""Pure torch models, the tokenizer wrapper and MLflow model packaging."""
