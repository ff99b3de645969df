-- One database per server on the shared Postgres (docker-compose.yml).
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
