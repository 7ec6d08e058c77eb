"""Opening the working database and keeping its schema in step with tables.py.

DDL is compiled by SQLAlchemy (duckdb-engine dialect) from the table definitions and run on a
native DuckDB connection, so the landing's bulk inserts use the same connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb
from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable

from rescue_pipeline.warehouse import tables


def dialect() -> Dialect:
    from duckdb_engine import Dialect as DuckDBDialect

    return DuckDBDialect()


def _literal(text: str) -> str:
    """Quote our own comment text (constants from tables.py, never data) as an SQL literal."""
    return "'" + text.replace("'", "''") + "'"


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


def open_work_db(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (and, for writers, create or upgrade) the working database."""
    if read_only:
        return duckdb.connect(str(path), read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    ensure_schema(con)
    return con


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("BEGIN")
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    for statement in ddl((*tables.RAW_TABLES, *tables.OPS_TABLES)):
        con.execute(statement)
    con.execute(tables.CURRENT_VIEW_SQL)
    con.execute(f"COMMENT ON VIEW raw.fhir_resources IS {_literal(tables.CURRENT_VIEW_COMMENT)}")
    con.execute("COMMIT")
