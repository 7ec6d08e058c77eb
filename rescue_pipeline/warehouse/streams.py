"""Rows between DuckDB and the Python rules, a bounded batch at a time.

The rules that need Python (lines of therapy, recurrences, GCIG, eligibility, time to event)
work one subject at a time. Reading a whole table into Python objects costs about 100 bytes a
value, gigabytes at 100,000 patients; instead an ordered query is streamed in Arrow batches and
cut into subjects (`by_subject`), and what the rules produce is gathered as compact Arrow
columns (`ColumnSink`) and inserted once the stream is read (a DuckDB connection serves one
result at a time, and a build's statements share its transaction).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Double, Float, Integer, Table

BATCH_ROWS = 50_000


def rows(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any] | Sequence[Any] | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[tuple[Any, ...]]:
    """The query's rows as tuples, read `batch_rows` at a time."""
    reader = con.sql(sql, params=params).to_arrow_reader(batch_rows)
    for batch in reader:
        columns = [column.to_pylist() for column in batch.columns]
        yield from zip(*columns, strict=True)


def by_subject(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any] | Sequence[Any] | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[tuple[Any, list[tuple[Any, ...]]]]:
    """An ordered query's rows grouped by its first column: (key, [rest of each row]), one key
    at a time. The query must order by its first column (a key may span batches)."""
    current: Any = None
    group: list[tuple[Any, ...]] = []
    started = False
    for row in rows(con, sql, params, batch_rows=batch_rows):
        if not started or row[0] != current:
            if started:
                yield current, group
            current, group, started = row[0], [], True
        group.append(row[1:])
    if started:
        yield current, group


def _arrow_type(sql_type: object) -> pa.DataType:
    if isinstance(sql_type, Boolean):
        return pa.bool_()
    if isinstance(sql_type, BigInteger):
        return pa.int64()
    if isinstance(sql_type, Integer):
        return pa.int32()
    if isinstance(sql_type, Double | Float):
        return pa.float64()
    if isinstance(sql_type, DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(sql_type, Date):
        return pa.date32()
    if isinstance(sql_type, JSON):
        return pa.string()
    return pa.string()


def arrow_schema(table: Table, names: Sequence[str] | None = None) -> pa.Schema:
    """The Arrow schema of a warehouse table's columns (all, or `names` in that order)."""
    columns = {c.name: c for c in table.columns}
    chosen = names if names is not None else list(columns)
    return pa.schema([(name, _arrow_type(columns[name].type)) for name in chosen])


def insert_arrow(con: duckdb.DuckDBPyConnection, table: Table, data: pa.Table) -> None:
    """Insert an Arrow table into a warehouse table, columns matched by name."""
    if data.num_rows == 0:
        return
    con.register("insert_arrow_source", data)
    try:
        con.execute(f"INSERT INTO {table.fullname} BY NAME SELECT * FROM insert_arrow_source")
    finally:
        con.unregister("insert_arrow_source")


class ColumnSink:
    """Rows gathered as Arrow columns: a dict of Python lists up to `flush_rows` rows, then a
    record batch of the schema's types."""

    def __init__(self, schema: pa.Schema | Table, flush_rows: int = BATCH_ROWS) -> None:
        self.schema: pa.Schema = schema if isinstance(schema, pa.Schema) else arrow_schema(schema)
        self.flush_rows = flush_rows
        self._columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self._batches: list[pa.RecordBatch] = []
        self.rows = 0

    def add(self, values: Mapping[str, Any]) -> None:
        for name, column in self._columns.items():
            column.append(values.get(name))
        self.rows += 1
        if len(next(iter(self._columns.values()))) >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._columns or not next(iter(self._columns.values())):
            return
        self._batches.append(pa.RecordBatch.from_pydict(self._columns, schema=self.schema))
        self._columns = {name: [] for name in self.schema.names}

    def table(self) -> pa.Table:
        self._flush()
        return pa.Table.from_batches(self._batches, schema=self.schema)
