"""Compare two published warehouses table by table: a change that should change no result (a
faster plan, a refactor) is checked by building the same cohort before and after it.

    python bench/compare_published.py before/rescue.duckdb after/rescue.duckdb

Every table of `core`, `analysis` and `quality` is compared row for row (as a multiset),
leaving out the columns that name a run or a time (run ids, timestamps of any type, seconds)
and any named with --ignore. Prints one line per table and exits 1 when any differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

# Columns that differ between two runs of the same data by design.
VOLATILE = {
    "run_id",
    "load_id",
    "checked_at",
    "built_at",
    "derived_at",
    "published_at",
    "started_at",
    "finished_at",
    "received_at",
    "seconds",
    "quality_run",
}


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    rows = con.execute(
        "SELECT table_schema || '.' || table_name, list(column_name ORDER BY ordinal_position) "
        "FROM information_schema.columns WHERE table_schema IN ('core', 'analysis', 'quality') "
        "AND data_type NOT LIKE 'TIMESTAMP%' GROUP BY ALL"
    ).fetchall()
    return {name: columns for name, columns in rows}


def _digest(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> tuple[int, int]:
    kept = [c for c in columns if c not in VOLATILE]
    if not kept:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]), 0
    listed = ", ".join(f'"{c}"' for c in kept)
    count, digest = con.execute(
        f"SELECT count(*), coalesce(sum(hash(({listed}))), 0) FROM {table}"
    ).fetchall()[0]
    return int(count), int(digest)


def compare(before: Path, after: Path, ignore: frozenset[str] = frozenset()) -> list[str]:
    """The tables that differ (present in one only, other rows), each with a short reason."""
    a = duckdb.connect(str(before), read_only=True)
    b = duckdb.connect(str(after), read_only=True)
    try:
        ta, tb = _tables(a), _tables(b)
        differ = []
        for name in sorted(ta.keys() | tb.keys()):
            if name not in ta or name not in tb:
                differ.append(f"{name}: only in {'after' if name in tb else 'before'}")
                continue
            shared = [c for c in ta[name] if c in tb[name] and c not in ignore]
            ca, cb = _digest(a, name, shared), _digest(b, name, shared)
            extra = sorted(set(ta[name]) ^ set(tb[name]))
            note = f" (columns in one only: {', '.join(extra)})" if extra else ""
            if ca != cb:
                differ.append(f"{name}: {ca[0]} rows before, {cb[0]} after, contents differ{note}")
            else:
                print(f"same  {name} ({ca[0]} rows){note}")
        return differ
    finally:
        a.close()
        b.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument(
        "--ignore", action="append", default=[], help="a column to leave out (repeatable)"
    )
    args = parser.parse_args()
    differ = compare(args.before, args.after, frozenset(args.ignore))
    for line in differ:
        print(f"DIFF  {line}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
