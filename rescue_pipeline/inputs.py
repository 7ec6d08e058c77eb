"""What a derivation (core → analysis → quality → publish → report) reads, as one fingerprint.

Every stage after the landing is a pure function of the raw layer, the configuration that
shapes the tables, the effective cut-off, the pseudonym key and the code. When all of them are
as they were at the last publish, running the stages again would write the same warehouse: a
nightly load that brought nothing new then rebuilds nothing (ops.derivations records them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import duckdb

from rescue_pipeline.config import Config
from rescue_pipeline.quality import suites as suites_module

# The libraries whose upgrade can change a result (parsing, rules' inputs, checks).
_LIBRARIES = ("duckdb", "great-expectations", "fhir.resources", "pyarrow", "pandas")
_CODE_SUFFIXES = {".py", ".sql", ".json", ".yaml", ".yml", ".csv", ".tsv", ".txt"}


PACKAGE = Path(__file__).resolve().parent


@cache
def code_fingerprint(root: Path = PACKAGE) -> str:
    """sha256 over the pipeline's code and data files (SQL, views, terminology, the suites) and
    the versions of the libraries results depend on."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in _CODE_SUFFIXES):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name}=={version(name)}".encode())
        except PackageNotFoundError:
            digest.update(f"{name} absent".encode())
    return digest.hexdigest()


def _raw_state(con: duckdb.DuckDBPyConnection) -> list[object]:
    """Counts and newest loads of what the derivation reads from raw (every landing that adds
    a version, a quarantined line or a deletion changes them; re-reading known versions does
    not)."""
    state: list[object] = []
    for table in ("raw.fhir_resource_versions", "raw.quarantine", "raw.deletions"):
        count, newest = con.execute(f"SELECT count(*), max(load_id) FROM {table}").fetchall()[0]
        state += [table, int(count), newest]
    return state


def fingerprint(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    key: bytes,
    cutoff: dt.date,
) -> str:
    """The inputs of a derivation from the working database `con`, as a sha256."""
    shaping = {
        "study_id": config.study_id,
        "nct_id": config.nct_id,
        "analysis": {k: str(v) for k, v in dataclasses.asdict(config.analysis).items()},
        "cutoff": cutoff.isoformat(),
        "sites": [
            {"id": s.id, "concept_map": [dataclasses.asdict(m) for m in s.concept_map]}
            for s in config.sites
        ],
        "raw": _raw_state(con),
        "code": code_fingerprint(),
        "suites": suites_module.suites_sha256(),  # the gate in use, wherever it is read from
    }
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode())
    digest.update(hashlib.sha256(b"rescue-derivation\0" + key).digest())  # never the key itself
    return digest.hexdigest()


def last_published(con: duckdb.DuckDBPyConnection) -> str | None:
    """The fingerprint of the inputs the published warehouse was derived from."""
    rows = con.execute(
        "SELECT fingerprint FROM ops.derivations WHERE published_at IS NOT NULL "
        "ORDER BY published_at DESC LIMIT 1"
    ).fetchall()
    return str(rows[0][0]) if rows else None


def record_built(con: duckdb.DuckDBPyConnection, value: str) -> None:
    con.execute("INSERT INTO ops.derivations VALUES (?, ?, NULL)", [value, dt.datetime.now(dt.UTC)])


def record_published(con: duckdb.DuckDBPyConnection, at: dt.datetime) -> None:
    """The latest build is what was just published."""
    con.execute(
        "UPDATE ops.derivations SET published_at = ? "
        "WHERE built_at = (SELECT max(built_at) FROM ops.derivations)",
        [at],
    )
