"""Watermarks: where each site's next incremental extract starts, per resource type.

A mark is read before a load and written only after that load's landing has committed, so a
run that fails part-way leaves it where it was and the next run fetches the same window again
(landing's idempotence turns the repeats into no new versions). A mark never moves backwards.
The marks of REST sites' type-level history (deletions) are kept apart, in ops.deletion_marks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import duckdb

_TABLES = {"search": "ops.watermarks", "deletions": "ops.deletion_marks"}
_UPSERT = """
INSERT INTO {table} VALUES (?, ?, ?, ?, ?)
ON CONFLICT (site_id, resource_type) DO UPDATE SET
    mark = greatest(mark, excluded.mark),
    updated_at = excluded.updated_at,
    load_id = excluded.load_id
"""


def read_marks(
    con: duckdb.DuckDBPyConnection, site_id: str, *, of: str = "search"
) -> dict[str, dt.datetime]:
    """The site's marks per type: of the search (ops.watermarks) or of deletions."""
    rows = con.execute(
        f"SELECT resource_type, mark FROM {_TABLES[of]} WHERE site_id = ?",  # table: ours
        [site_id],
    ).fetchall()
    return {rtype: utc(mark) for rtype, mark in rows}


def advance_marks(
    con: duckdb.DuckDBPyConnection,
    site_id: str,
    marks: Mapping[str, dt.datetime],
    *,
    load_id: str,
    now: dt.datetime | None = None,
    of: str = "search",
) -> None:
    """Store the new marks (call only once the landing they cover has committed)."""
    if not marks:
        return
    now = now or dt.datetime.now(dt.UTC)
    con.executemany(
        _UPSERT.format(table=_TABLES[of]),
        [[site_id, rtype, utc(mark), now, load_id] for rtype, mark in marks.items()],
    )


def utc(value: dt.datetime) -> dt.datetime:
    """An instant in UTC, whatever zone DuckDB or the caller handed it in."""
    if value.tzinfo is None:  # DuckDB hands back TIMESTAMPTZ in the session zone; be explicit
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def format_mark(value: dt.datetime) -> str:
    """An instant as FHIR search wants it here: UTC with `Z`, milliseconds, rounded down.

    Some servers compare these as strings (sekmet's `_since`), so the form is always the same.
    """
    value = utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
