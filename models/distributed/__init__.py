"""Multi-process training: the process group (`process_group`), how a model is wrapped for it
(`parallelize`: activation checkpointing, DDP/FSDP2, compile) and sharded checkpoints (`dcp`).
"""
