"""Rows to the Python rules a subject at a time, and their results back as Arrow columns."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
from sqlalchemy import Boolean, Column, Date, Integer, MetaData, String, Table

from rescue_pipeline.warehouse.streams import (
    ColumnSink,
    arrow_schema,
    by_subject,
    insert_arrow,
    rows,
)


def _doses(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE doses AS SELECT 'S' || lpad((range // 7)::VARCHAR, 3, '0') AS usubjid, "
        "DATE '2024-01-01' + (range % 7)::INTEGER AS day, range AS n FROM range(700)"
    )


def test_an_ordered_query_is_cut_into_subjects_across_batch_boundaries() -> None:
    con = duckdb.connect()
    _doses(con)
    groups = list(by_subject(con, "SELECT * FROM doses ORDER BY usubjid, n", batch_rows=10))
    assert len(groups) == 100
    assert [key for key, _ in groups] == sorted(f"S{i:03d}" for i in range(100))
    assert all(len(group) == 7 for _, group in groups)  # 7 a subject, batches of 10
    key, group = groups[3]
    assert key == "S003" and group[0] == (dt.date(2024, 1, 1), 21)
    assert list(by_subject(con, "SELECT * FROM doses WHERE false")) == []


def test_rows_stream_with_parameters() -> None:
    con = duckdb.connect()
    _doses(con)
    got = list(
        rows(con, "SELECT n FROM doses WHERE n < $top ORDER BY n", {"top": 25}, batch_rows=4)
    )
    assert got == [(n,) for n in range(25)]


def test_the_sink_keeps_the_tables_types_and_flushes_as_it_goes() -> None:
    table = Table(
        "t",
        MetaData(),
        Column("usubjid", String),
        Column("line", Integer),
        Column("started_on", Date),
        Column("platinum", Boolean),
        schema="main",
    )
    sink = ColumnSink(table, flush_rows=3)
    for i in range(8):
        # a column with no value at all in a batch keeps its type
        sink.add({"usubjid": f"S{i}", "line": i, "started_on": None, "platinum": i % 2 == 0})
    out = sink.table()
    assert out.schema == arrow_schema(table)
    assert out.num_rows == sink.rows == 8
    assert out.column("line").to_pylist() == list(range(8))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (usubjid VARCHAR, line INTEGER, started_on DATE, platinum BOOL)")
    insert_arrow(con, table, out)
    assert con.execute("SELECT count(*), sum(line), count(started_on) FROM t").fetchall() == [
        (8, 28, 0)
    ]
    insert_arrow(con, table, ColumnSink(table).table())  # nothing to insert
    assert pa.types.is_date32(out.schema.field("started_on").type)
