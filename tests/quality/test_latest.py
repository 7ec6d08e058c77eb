"""The latest quality run and publication, read by one function each, also from a working
database an earlier version wrote (quality.results without the newer columns)."""

from __future__ import annotations

import datetime as dt

import duckdb

from rescue_pipeline.quality.latest import (
    failures_by_site,
    latest_publication,
    latest_quality_run,
)
from rescue_pipeline.warehouse.database import create_or_upgrade
from rescue_pipeline.warehouse.quality_tables import QUALITY_TABLES

OLD_RESULTS = """
CREATE TABLE quality.results (run_id VARCHAR, site_id VARCHAR, layer VARCHAR,
  table_name VARCHAR, expectation VARCHAR, description VARCHAR, severity VARCHAR,
  success BOOLEAN, observed_value VARCHAR, unexpected_count BIGINT, sample_keys VARCHAR,
  checked_at VARCHAR)
"""


def _row(run: str, site: str | None, ok: bool, at: str, severity: str = "critical") -> list:
    return [run, site, "core", "core.subjects", "expect_x", "d", severity, ok, None, 0, None, at]


def test_nothing_to_read_before_the_first_run() -> None:
    con = duckdb.connect()
    assert latest_quality_run(con) is None and latest_publication(con) is None


def test_an_earlier_versions_results_read_and_upgrade() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA quality")
    con.execute(OLD_RESULTS)
    con.executemany(
        "INSERT INTO quality.results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            _row("old", "site-a", False, "2026-01-01T00:00:00"),
            _row("new", "site-a", False, "2026-02-01T00:00:00"),
            _row("new", "site-b", False, "2026-02-01T00:00:00", "warning"),
            _row("new", None, True, "2026-02-01T00:00:00"),
        ],
    )
    latest = latest_quality_run(con)
    assert latest is not None and latest.run_id == "new" and len(latest.checks) == 3
    assert all(c.check_id is None and c.suites_sha256 is None for c in latest.checks)
    assert failures_by_site(latest) == {"site-a": (1, 0), "site-b": (0, 1)}
    create_or_upgrade(con, QUALITY_TABLES)  # comments need the new columns: added first
    comment = con.execute(
        "SELECT comment FROM duckdb_columns() WHERE table_name = 'results' "
        "AND column_name = 'check_id'"
    ).fetchall()
    assert comment and "stable id" in comment[0][0]


def test_the_latest_publication_is_the_latest_publish() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA quality")
    create_or_upgrade(con, QUALITY_TABLES)
    first, second = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    con.executemany(
        "INSERT INTO quality.publications (published_at, site_id, status, data_as_of, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            [first, "site-a", "published", first, None],
            [second, "site-a", "held", first, "1 critical check(s) failed"],
            [second, "site-b", "published", second, None],
        ],
    )
    publication = latest_publication(con)
    assert publication is not None and publication.published_at == second
    assert [s.site_id for s in publication.held] == ["site-a"]
    assert publication.status_of("site-b") == "published" and publication.status_of("x") is None
