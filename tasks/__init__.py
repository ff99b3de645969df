"""Stage logic: one module per pipeline stage, each a plain typed function plus a thin Prefect task."""
