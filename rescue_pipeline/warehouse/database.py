"""Opening the working database and keeping its schema in step with tables.py.

DDL is compiled by SQLAlchemy (duckdb-engine dialect) from the table definitions and run on a
native DuckDB connection, so the landing's bulk inserts use the same connection.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn, CreateTable

from rescue_pipeline.config import DuckDBConfig
from rescue_pipeline.machine import usable_memory
from rescue_pipeline.warehouse import tables

log = logging.getLogger(__name__)


def dialect() -> Dialect:
    from duckdb_engine import Dialect as DuckDBDialect

    return DuckDBDialect()


def _literal(text: str) -> str:
    """Quote our own comment text (constants from tables.py, never data) as an SQL literal."""
    return "'" + text.replace("'", "''") + "'"


@compiles(CreateColumn, "duckdb")
def _column_with_compression(element: CreateColumn, compiler: Any, **kw: Any) -> str:
    """A column's definition, with DuckDB's `USING COMPRESSION` when tables.py names one (it
    goes between the type and the constraints). Only new tables get it: DuckDB cannot change
    a column's compression in place."""
    text: str = compiler.visit_create_column(element, **kw)
    compression = element.element.info.get("compression")
    if compression:
        type_ = element.element.type.compile(dialect=compiler.dialect)
        head = f"{compiler.preparer.format_column(element.element)} {type_}"
        if not text.startswith(head):
            raise RuntimeError(f"cannot place the compression of column {element.element.name}")
        text = f"{head} USING COMPRESSION {compression}{text[len(head) :]}"
    return text


def ddl(tables_: Iterable[Table]) -> list[str]:
    dialect_ = dialect()
    out: list[str] = []
    for table in tables_:
        create = str(CreateTable(table, if_not_exists=True).compile(dialect=dialect_)).strip()
        out.append(create)
        if table.comment:
            out.append(f"COMMENT ON TABLE {table.fullname} IS {_literal(table.comment)}")
        for column in table.columns:
            if column.comment:
                target = f"{table.fullname}.{column.name}"
                out.append(f"COMMENT ON COLUMN {target} IS {_literal(column.comment)}")
    return out


MIN_MEMORY = 256 * 2**20
FALLBACK_MEMORY = 2 * 2**30  # when neither the machine nor a container says how much there is
_UNITS = {"MB": 10**6, "GB": 10**9, "TB": 10**12, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?(MB|GB|TB|MiB|GiB|TiB)|([0-9]+(?:\.[0-9]+)?)%")


def memory_limit_bytes(setting: str, usable: int | None) -> int:
    """`2GB`, `1500MiB` or a share (`5%`) of the memory this process may use, never below
    256 MiB (DuckDB needs some to run at all)."""
    match = _SIZE.fullmatch(setting.strip())
    if match is None:
        raise ValueError(f"duckdb.memory_limit: {setting!r} is not a size or a share")
    if match[3] is not None:
        wanted = int((usable or FALLBACK_MEMORY) * float(match[3]) / 100)
    else:
        wanted = int(float(match[1]) * _UNITS[match[2]])
    return max(wanted, MIN_MEMORY)


# What our worker processes need beside DuckDB: the quality worker (Great Expectations and the
# frames in flight) and the two validation workers (the FHIR models, a few batches each) take
# 0.25-0.4 GB at 100,000 patients. At most a third of the limit is left to them: 0.4 GB of the
# default 1.2 GB on a 24 GB machine. Measured there: the raw integrity query as fast at 0.8 GB,
# traceability 3.7 -> 4.9 s.
WORKERS_RESERVE = 512 * 2**20


@contextmanager
def memory_beside(
    con: duckdb.DuckDBPyConnection, limits: DuckDBConfig, reserve: int = WORKERS_RESERVE
) -> Iterator[None]:
    """DuckDB leaves `reserve` bytes of its memory limit (at most a third of it) to another
    process of ours that works beside it inside the block, spilling or evicting cached blocks to
    keep to the rest; after the block it has its whole limit again.

    `con` was opened with `limits` (work_db does so). The limit belongs to the database, not
    the connection: every cursor keeps to it; the blocks do not nest. Changing it is an economy,
    never a reason to fail: when DuckDB cannot free enough at once, the block runs at the whole
    limit; a restore that fails is logged. Both go through a cursor of their own, which leaves
    a transaction of `con` as it was (even a failed one).
    """
    whole = memory_limit_bytes(limits.memory_limit, usable_memory())
    part = max(whole - min(reserve, whole // 3), MIN_MEMORY)
    if part != whole:
        try:
            _set_limit(con, part)
        except duckdb.OutOfMemoryException:
            part = whole
    try:
        yield
    finally:
        if part != whole:
            try:
                _set_limit(con, whole)
            except duckdb.Error as exc:  # a broken database: the block's own error says why
                log.warning("DuckDB's memory limit was not restored: %s", type(exc).__name__)


def _set_limit(con: duckdb.DuckDBPyConnection, limit: int) -> None:
    """A limit of ours (an integer, never data), set on a cursor of its own."""
    cursor = con.cursor()
    try:
        cursor.execute(f"SET memory_limit = '{limit // 2**20}MiB'")
    finally:
        cursor.close()


def connection_settings(limits: DuckDBConfig, path: Path) -> dict[str, str | int]:
    """DuckDB's settings for a connection to the working database at `path`: a memory limit
    taken from this machine (or the configuration), a spill folder, the threads."""
    settings: dict[str, str | int] = {
        "memory_limit": f"{memory_limit_bytes(limits.memory_limit, usable_memory()) // 2**20}MiB",
        "temp_directory": str(limits.temp_directory or path.with_name(path.name + ".tmp")),
    }
    if limits.threads:
        settings["threads"] = limits.threads
    return settings


def open_work_db(
    path: Path, *, read_only: bool = False, limits: DuckDBConfig | None = None
) -> duckdb.DuckDBPyConnection:
    """Open (and, for writers, create or upgrade) the working database.

    DuckDB would otherwise take up to 80% of the machine's physical memory (more than a
    container may use): the limit from `limits` (default 5% of what this process may use) makes
    large builds spill to the temp directory instead, so memory stays bounded.
    """
    config: dict[str, str | bool | int | float | list[str]] = dict(
        connection_settings(limits or DuckDBConfig(), path)
    )
    if read_only:
        return quiet(duckdb.connect(str(path), read_only=True, config=config))
    path.parent.mkdir(parents=True, exist_ok=True)
    con = quiet(duckdb.connect(str(path), config=config))
    ensure_schema(con)
    return con


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """No progress bar from DuckDB on a terminal (queries over 2 s draw one): the command line
    shows its own stages. A connection's own setting; cursors need it again."""
    con.execute("SET enable_progress_bar = false")
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All or nothing: commit when the block ends, roll back if it raises (or is killed)."""
    con.execute("BEGIN")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@cache
def _schema_sha256() -> str:
    """The raw and ops layer's definitions as created, comments and view included."""
    parts = [*ddl((*tables.RAW_TABLES, *tables.OPS_TABLES))]
    parts += [tables.CURRENT_VIEW_SQL, tables.CURRENT_VIEW_COMMENT]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create what is missing of the raw and ops layers (and add new columns). Skipped when the
    file says it was done for these very definitions: a load opens the database a few dozen
    times, and the definitions are a hundred statements."""
    wanted = _schema_sha256()
    try:
        done = con.execute("SELECT ddl_sha256 FROM ops.schema_state").fetchall()
    except duckdb.CatalogException:
        done = []
    if done == [(wanted,)]:
        return
    with transaction(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        con.execute("CREATE SCHEMA IF NOT EXISTS ops")
        create_or_upgrade(con, (*tables.RAW_TABLES, *tables.OPS_TABLES))
        con.execute(tables.CURRENT_VIEW_SQL)
        comment = _literal(tables.CURRENT_VIEW_COMMENT)
        con.execute(f"COMMENT ON VIEW raw.fhir_resources IS {comment}")
        con.execute("CREATE OR REPLACE TABLE ops.schema_state AS SELECT ? AS ddl_sha256", [wanted])


def create_or_upgrade(con: duckdb.DuckDBPyConnection, tables_: Iterable[Table]) -> None:
    """Create the tables that are missing, add the columns an earlier version did not have,
    then comment every table and column (a comment needs its column to exist)."""
    tables_ = list(tables_)
    statements = ddl(tables_)
    for statement in statements:
        if statement.startswith("CREATE"):
            con.execute(statement)
    add_new_columns(con, tables_)
    for statement in statements:
        if not statement.startswith("CREATE"):
            con.execute(statement)


def add_new_columns(con: duckdb.DuckDBPyConnection, tables_: Iterable[Table]) -> None:
    """A database made by an earlier version gets the columns added since (always at the end
    and nullable, so inserts by position stay right); existing rows read NULL there."""
    present = set(
        con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
        ).fetchall()
    )
    dialect_ = dialect()
    for table in tables_:
        for column in table.columns:
            if (table.schema, table.name, column.name) in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"{table.fullname}.{column.name}: a new column must be nullable")
            type_ = column.type.compile(dialect=dialect_)
            con.execute(f"ALTER TABLE {table.fullname} ADD COLUMN {column.name} {type_}")


def has_table(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    """Whether the connection's own database holds the table (a first run, or a database an
    earlier version wrote, may not)."""
    return bool(
        con.execute(
            "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ?",
            [schema, name],
        ).fetchall()
    )


def table_columns(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> set[str]:
    """The columns a table of the connection's own database has (one an earlier version wrote
    may lack the newer ones)."""
    return {
        column
        for (column,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ?",
            [schema, name],
        ).fetchall()
    }


def rebuild_tables(
    con: duckdb.DuckDBPyConnection, tables_: Sequence[Table], *, run_log: Table
) -> None:
    """Drop and recreate a layer's tables from their definitions, keeping its run log's rows.

    A layer is rebuilt whole from the layer before it (a replay); only the log of past runs
    (settings, row counts) carries over.
    """
    exists = has_table(con, str(run_log.schema), run_log.name)
    history = con.execute(f"SELECT * FROM {run_log.fullname}").fetchall() if exists else []
    for table in tables_:
        con.execute(f"DROP TABLE IF EXISTS {table.fullname}")
    for statement in ddl(tables_):
        con.execute(statement)
    if history:
        marks = ", ".join("?" for _ in run_log.columns)
        con.executemany(f"INSERT INTO {run_log.fullname} VALUES ({marks})", history)


def insert_columns(
    con: duckdb.DuckDBPyConnection, table: Table, columns: Mapping[str, list[Any]]
) -> None:
    """Insert rows given as columns (name -> values), matched to the table by name."""
    if not columns:
        return
    con.register("insert_columns_source", pa.table(dict(columns)))
    con.execute(f"INSERT INTO {table.fullname} BY NAME SELECT * FROM insert_columns_source")
    con.unregister("insert_columns_source")


def count_rows(
    con: duckdb.DuckDBPyConnection, tables_: Sequence[Table], *, run_log: Table
) -> dict[str, int]:
    """Rows per table of a layer (its run log left out), as recorded with each run."""
    return {
        t.name: int(con.execute(f"SELECT count(*) FROM {t.fullname}").fetchall()[0][0])
        for t in tables_
        if t is not run_log
    }


def record_run(
    con: duckdb.DuckDBPyConnection,
    run_log: Table,
    *,
    settings: Mapping[str, Any],
    rows: Mapping[str, int],
    seconds: float,
) -> None:
    """One row in a layer's run log: when, with which settings, how many rows, how long."""
    con.execute(
        f"INSERT INTO {run_log.fullname} VALUES (?, ?, ?, ?)",
        [
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            json.dumps(dict(settings), default=str),
            json.dumps(dict(rows)),
            seconds,
        ],
    )
