"""A throwaway PostgreSQL server for the tests that need the production Dagster instance.

Debian's server binaries (`apt-get install postgresql`, under /usr/lib/postgresql/<v>/bin) start
a cluster in a temporary folder on 127.0.0.1 and a free port, with a password user and one
database; it is stopped and removed afterwards. PostgreSQL refuses to run as root: as root the
cluster belongs to the `postgres` user the Debian package creates, and its commands run through
`runuser`. Without the binaries the tests are skipped with the install hint, unless
RESCUE_POSTGRES names them (CI): then their absence is a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_ENV = "RESCUE_POSTGRES"  # the bin folder holding initdb and pg_ctl
INSTALL_HINT = (
    "sudo apt-get install postgresql (Debian's server; or set RESCUE_POSTGRES to the folder "
    "holding its initdb and pg_ctl)"
)


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    db: str

    def env(self) -> dict[str, str]:
        """The variables dagster_home/dagster.postgres.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db,
        }


def find_binaries() -> Path | None:
    named = os.environ.get(POSTGRES_ENV)
    if named:
        folder = Path(named)
        if not (folder / "initdb").exists():
            pytest.fail(f"{POSTGRES_ENV}={named} holds no initdb: {INSTALL_HINT}")
        return folder
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_postgres() -> Iterator[Postgres]:
    binaries = find_binaries()
    if binaries is None:
        pytest.skip(f"PostgreSQL server binaries not found: {INSTALL_HINT}")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        pytest.fail("running as root needs runuser to start PostgreSQL as the postgres user")
    folder = Path(tempfile.mkdtemp(prefix="rescue-pg-"))  # not under pytest's root-only tmp
    prefix: list[str] = []
    if as_root:
        shutil.chown(folder, user="postgres", group="postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"
    user, password, db = "rescue", secrets.token_urlsafe(16), "dagster"
    pwfile = folder / "pw"
    pwfile.write_text(password + "\n")
    if as_root:
        shutil.chown(pwfile, user="postgres", group="postgres")
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"{Path(args[0]).name} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    started = False
    try:
        run(
            str(binaries / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
            "-t", "60", "start")  # fmt: skip
        started = True
        _create_database(port, user, password, db)
        yield Postgres("127.0.0.1", port, user, password, db)
    finally:
        if started:
            subprocess.run(
                [*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(folder, ignore_errors=True)


def _create_database(port: int, user: str, password: str, db: str) -> None:
    import psycopg2  # installed with dagster-postgres

    deadline = time.monotonic() + 30
    while True:
        try:
            con = psycopg2.connect(
                host="127.0.0.1", port=port, user=user, password=password, dbname="postgres"
            )
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')  # our own constant name, not data
    con.close()
