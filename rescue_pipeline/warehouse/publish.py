"""Publishing: the next warehouse is built beside the published one, then renamed over it.

DESIGN.md: the published warehouse (`warehouse:` in sites.yaml) holds `core` and `analysis`
(and later `quality`), never `raw`, so it carries no direct identifiers by construction.
A publish writes `<name>.next.duckdb` from the working database, checkpoints and closes it,
then renames it over the published file: on POSIX the rename is atomic, so an analyst's query
sees the old file or the new one, never a half-written one, and a reader that already has the
old file open keeps reading it until it closes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from sqlalchemy import Table

from rescue_pipeline.warehouse.analysis_tables import ANALYSIS_TABLES
from rescue_pipeline.warehouse.core_tables import CORE_TABLES
from rescue_pipeline.warehouse.database import ddl
from rescue_pipeline.warehouse.quality_tables import QUALITY_TABLES

PUBLISHED_TABLES: tuple[Table, ...] = (*CORE_TABLES, *ANALYSIS_TABLES, *QUALITY_TABLES)
NEXT_ALIAS = "next_warehouse"


@dataclass
class PublishResult:
    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def next_path(published: Path) -> Path:
    return published.with_name(f"{published.stem}.next{published.suffix}")


def publish(con: duckdb.DuckDBPyConnection, published: Path) -> PublishResult:
    """Copy core and analysis from the working database into a new published file."""
    started = time.perf_counter()
    target = next_path(published)
    for stale in (target, target.with_name(target.name + ".wal")):
        stale.unlink(missing_ok=True)
    published.parent.mkdir(parents=True, exist_ok=True)
    work = con.execute("SELECT current_database()").fetchall()[0][0]
    present = {
        (schema, name)
        for schema, name in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?", [work]
        ).fetchall()
    }
    tables = [t for t in PUBLISHED_TABLES if (t.schema, t.name) in present]
    result = PublishResult(published)
    con.execute(f"ATTACH '{_sql_path(target)}' AS {NEXT_ALIAS}")
    try:
        con.execute(f"USE {NEXT_ALIAS}")
        for schema in sorted({t.schema for t in tables if t.schema}):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for statement in ddl(tables):  # same definitions and comments as the working copy
            con.execute(statement)
        for table in tables:
            columns = ", ".join(f'"{c.name}"' for c in table.columns)  # the definition's, only
            con.execute(
                f"INSERT INTO {table.fullname} ({columns}) "
                f'SELECT {columns} FROM "{work}".{table.fullname}'
            )
            count = con.execute(f"SELECT count(*) FROM {table.fullname}").fetchall()[0][0]
            result.rows[table.fullname] = int(count)
        con.execute(f'USE "{work}"')
        con.execute(f"CHECKPOINT {NEXT_ALIAS}")
    finally:
        con.execute(f'USE "{work}"')
        con.execute(f"DETACH {NEXT_ALIAS}")
    os.replace(target, published)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _sql_path(path: Path) -> str:
    """A path as an SQL string literal body (ATTACH takes no parameters)."""
    return str(path.resolve()).replace("'", "''")
