"""Prefect flows: composition of the stage tasks only."""
