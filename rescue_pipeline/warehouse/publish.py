"""Publishing: the next warehouse is built beside the published one, then renamed over it.

docs/warehouse.md: the published warehouse (`warehouse:` in sites.yaml) holds `core`, `analysis` and
`quality`, never `raw`, so it carries no direct identifiers by construction. A publish writes
`<name>.next.duckdb` from the working database, checkpoints and closes it, then renames it over
the published file: on POSIX the rename is atomic, so an analyst's query sees the old file or
the new one, never a half-written one, and a reader that already has the old file open keeps
reading it until it closes.

A site held back by a failed critical check keeps what the published file held for it: its
rows are copied from the old published file instead of the working database, so each site's
data in the warehouse is always data that passed its checks.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import Table

from rescue_pipeline.warehouse.analysis_tables import ANALYSIS_TABLES
from rescue_pipeline.warehouse.core_tables import CORE_TABLES
from rescue_pipeline.warehouse.database import create_or_upgrade, ddl, insert_columns
from rescue_pipeline.warehouse.quality_tables import QUALITY_TABLES, publications

PUBLISHED_TABLES: tuple[Table, ...] = (*CORE_TABLES, *ANALYSIS_TABLES, *QUALITY_TABLES)
NEXT_ALIAS = "next_warehouse"
PREVIOUS_ALIAS = "previous_warehouse"
STORAGE = "v1.0.0"


@dataclass
class PublishResult:
    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    published_at: dt.datetime | None = None
    # site → why it was held back, and since when its kept data were published (None: never)
    held: dict[str, str] = field(default_factory=dict)
    held_since: dict[str, dt.datetime | None] = field(default_factory=dict)


def next_path(published: Path) -> Path:
    return published.with_name(f"{published.stem}.next{published.suffix}")


def site_filter(table: Table) -> str | None:
    """SQL (over the table's own database) choosing a site's rows, `?` being the site list;
    None for tables that are not per site (run logs, quality: always this run's)."""
    names = {c.name for c in table.columns}
    if table.schema == "quality":
        return None
    if "site_id" in names:
        return "list_contains(?, site_id)"
    if "SITEID" in names:
        return "list_contains(?, SITEID)"
    if "USUBJID" in names:  # analysis.adtte: the site of the subject, from the same file's ADSL
        return "USUBJID IN (SELECT USUBJID FROM {db}.analysis.adsl WHERE list_contains(?, SITEID))"
    return None


def publish(
    con: duckdb.DuckDBPyConnection,
    published: Path,
    *,
    held: Mapping[str, str] | None = None,
    sites: list[str] | None = None,
) -> PublishResult:
    """Copy core, analysis and quality from the working database into a new published file;
    `held` sites' rows come from the file published before (or are left out if none)."""
    started = time.perf_counter()
    held = dict(held or {})
    target = next_path(published)
    for stale in (target, target.with_name(target.name + ".wal")):
        stale.unlink(missing_ok=True)
    published.parent.mkdir(parents=True, exist_ok=True)
    work = con.execute("SELECT current_database()").fetchall()[0][0]
    con.execute("CREATE SCHEMA IF NOT EXISTS quality")
    create_or_upgrade(con, [publications])  # the log of publishes starts with the first one
    tables = [t for t in PUBLISHED_TABLES if (t.schema, t.name) in _present(con, work)]
    result = PublishResult(published, held=held)
    previous = held and published.exists()
    if previous:
        con.execute(f"ATTACH '{_sql_path(published)}' AS {PREVIOUS_ALIAS} (READ_ONLY)")
    # Written in DuckDB's v1.0.0 storage format: analysts' tools on DuckDB 1.0 or newer open it
    # (2.x's own default format opens only in 2.x).
    con.execute(f"ATTACH '{_sql_path(target)}' AS {NEXT_ALIAS} (STORAGE_VERSION '{STORAGE}')")
    try:
        kept = _present(con, PREVIOUS_ALIAS) if previous else set()
        con.execute(f"USE {NEXT_ALIAS}")
        for schema in sorted({t.schema for t in tables if t.schema}):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for statement in ddl(tables):  # same definitions and comments as the working copy
            con.execute(statement)
        held_list = sorted(held)
        for table in tables:
            _copy(con, table, work, held_list, (table.schema, table.name) in kept)
            count = con.execute(f"SELECT count(*) FROM {table.fullname}").fetchall()[0][0]
            result.rows[table.fullname] = int(count)
        result.published_at = dt.datetime.now(dt.UTC)
        since = _held_since(con, held_list) if previous else {}
        result.held_since = {site: since.get(site) for site in held_list}
        logged = _publication_rows(result, sites or [])
        insert_columns(con, publications, logged)  # this publish, in the next file's log
        con.execute(f'USE "{work}"')
        con.execute(f"CHECKPOINT {NEXT_ALIAS}")
    finally:
        con.execute(f'USE "{work}"')
        con.execute(f"DETACH DATABASE IF EXISTS {NEXT_ALIAS}")
        con.execute(f"DETACH DATABASE IF EXISTS {PREVIOUS_ALIAS}")
    os.replace(target, published)
    # The working database keeps the history too (the next publish starts from it).
    insert_columns(con, publications, logged)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _present(con: duckdb.DuckDBPyConnection, database: str) -> set[tuple[str, str]]:
    return {
        (schema, name)
        for schema, name in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?",
            [database],
        ).fetchall()
    }


def _copy(
    con: duckdb.DuckDBPyConnection, table: Table, work: str, held: list[str], kept: bool
) -> None:
    columns = [c.name for c in table.columns]
    names = ", ".join(f'"{c}"' for c in columns)  # the definition's, only
    where = site_filter(table)
    if where is None or not held:
        con.execute(
            f'INSERT INTO {table.fullname} ({names}) SELECT {names} FROM "{work}".{table.fullname}'
        )
        return
    con.execute(
        f"INSERT INTO {table.fullname} ({names}) SELECT {names} "
        f'FROM "{work}".{table.fullname} WHERE NOT ({where.format(db=_q(work))})',
        [held],
    )
    if not kept:
        return  # a held site that was never published has no rows to keep
    old = {
        name
        for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND "
            "schema_name = ? AND table_name = ?",
            [PREVIOUS_ALIAS, table.schema, table.name],
        ).fetchall()
    }
    shared = [c for c in columns if c in old]  # a column added since is left null
    names = ", ".join(f'"{c}"' for c in shared)
    con.execute(
        f"INSERT INTO {table.fullname} ({names}) SELECT {names} "
        f"FROM {PREVIOUS_ALIAS}.{table.fullname} WHERE {where.format(db=PREVIOUS_ALIAS)}",
        [held],
    )


def _held_since(con: duckdb.DuckDBPyConnection, held: list[str]) -> dict[str, dt.datetime | None]:
    """When each held site's kept data were published, from the previous file's log."""
    if (publications.schema, publications.name) not in _present(con, PREVIOUS_ALIAS):
        return {}
    rows = con.execute(
        "SELECT site_id, max(data_as_of) FROM "
        f"{PREVIOUS_ALIAS}.{publications.fullname} WHERE list_contains(?, site_id) GROUP BY 1",
        [held],
    ).fetchall()
    return {site: when for site, when in rows}


def _publication_rows(result: PublishResult, sites: list[str]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        n: [] for n in ("published_at", "site_id", "status", "data_as_of", "reason")
    }
    for site in sorted(set(sites) | set(result.held)):
        held = site in result.held
        values = (
            result.published_at, site, "held" if held else "published",
            result.held_since.get(site) if held else result.published_at,
            result.held.get(site),
        )  # fmt: skip
        for name, value in zip(columns, values, strict=True):
            columns[name].append(value)
    return columns


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_path(path: Path) -> str:
    """A path as an SQL string literal body (ATTACH takes no parameters)."""
    return str(path.resolve()).replace("'", "''")
