"""A real PostgreSQL cluster for tests: Debian's server binaries (`make test` installs the `postgresql` package),
`initdb` into a temporary directory and `pg_ctl start` on a free loopback port, password authentication, with the
databases infra/postgres-init.sql creates (the same file the compose file's Postgres runs).

PostgreSQL refuses to run as root; as root (CI) the cluster runs as the `postgres` system user the Debian package
creates, via `runuser`."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "lmforge", "s3cret-pw"  # a password, so the tests see it redacted from errors


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}:{PASSWORD}@{self.host}:{self.port}/{database}"

    def query(self, database: str, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=USER, password=PASSWORD, dbname=database) as db:
            with db.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()


def server_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin (Debian keeps server binaries off PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql: run `make postgres` (apt: postgresql)")
    return found[-1].parent


def as_cluster_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    pwd.getpwnam("postgres")  # KeyError here: the postgresql package (which creates the user) is missing
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    bin_dir = server_bin_dir()
    temp = Path(tempfile.mkdtemp(prefix="lmforge-pg-"))
    data, pwfile = temp / "data", temp / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(temp, "postgres")
        shutil.chown(pwfile, "postgres")
    cluster = Postgres("127.0.0.1", free_port())
    run = lambda *command: subprocess.run(as_cluster_user(list(command)), check=True, capture_output=True,  # noqa: E731
                                          text=True, cwd=temp, timeout=120)
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
        "-E", "UTF8", "--locale=C")
    options = f"-c listen_addresses={cluster.host} -p {cluster.port} -c unix_socket_directories={temp}"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(temp / "server.log"), "-o", options, "-w", "-t", "60",
        "start")
    try:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        subprocess.run(["psql", "-h", cluster.host, "-p", str(cluster.port), "-U", USER, "-d", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-q", "-f", str(ROOT / "infra" / "postgres-init.sql")],
                       check=True, capture_output=True, env=env, timeout=60)
        yield cluster
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(temp, ignore_errors=True)
