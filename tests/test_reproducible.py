"""Reproducible: the same data built twice gives the same core and analysis tables, row for row.

Every tie in a derivation is broken by a stated rule (date, then resource type, then id), so
nothing depends on the order DuckDB's threads happen to produce rows in. Run logs (build_runs,
derivation_runs) carry times and are left out.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.warehouse.analysis_tables import ANALYSIS_TABLES
from rescue_pipeline.warehouse.core_tables import CORE_TABLES
from tests.cohort import build_cohort

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

RUN_LOGS = {"build_runs", "derivation_runs"}


def tables_of(path: Path) -> dict[str, list[tuple[object, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for table in (*CORE_TABLES, *ANALYSIS_TABLES):
            if table.name in RUN_LOGS:
                continue
            name = table.fullname
            out[name] = con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
        return out
    finally:
        con.close()


@pytest.mark.slow
def test_two_builds_of_the_same_data_give_identical_tables(tmp_path: Path) -> None:
    first, _ = build_cohort(tmp_path / "one", patients=200, seed=41, fault_rate=0.05)
    second, _ = build_cohort(tmp_path / "two", patients=200, seed=41, fault_rate=0.05)
    a, b = tables_of(first.work_db), tables_of(second.work_db)
    assert a.keys() == b.keys()
    differ = [name for name in a if a[name] != b[name]]
    assert differ == []
    assert sum(len(rows) for rows in a.values()) > 10_000
