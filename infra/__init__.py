"""How lmforge's servers start: Prefect and MLflow on loopback, deployments, production compose file."""
