"""The quality step and the gate before publishing.

Every run's results land in quality.results (in the working database; the publish copies them),
with the row-level findings that become each site's data queries, and the load and quarantine
counts the sponsors' report plots. A critical check that failed for one site holds that site
back (its last published data stay published); one that is not site-specific refuses the whole
publish. Either way the checks, sites and row counts are named.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from rescue_pipeline.config import Config
from rescue_pipeline.quality.completeness import write_completeness
from rescue_pipeline.quality.kri import write_kris
from rescue_pipeline.quality.suites import CheckResult, load_suites, run_suites, suites_sha256
from rescue_pipeline.quality.suites import worker as suites_worker
from rescue_pipeline.warehouse.database import (
    create_or_upgrade,
    has_table,
    insert_columns,
    memory_beside,
    transaction,
)
from rescue_pipeline.warehouse.quality_tables import (
    QUALITY_TABLES,
    findings,
    load_history,
    quarantine_counts,
    results,
)

WHOLE_TABLE = "(whole table)"
RAW_INTEGRITY_SUITE = "raw.fhir_resource_versions"  # versions stored once, hashes that match


class PublishRefused(RuntimeError):
    """A critical data-quality check that is not site-specific failed: nothing is published
    (exit code 3)."""


@dataclass
class QualityResult:
    run_id: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity == "critical" and not c.success]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity != "critical" and not c.success]


def run_quality(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    today: dt.date | None = None,
    stop_worker: bool = False,
) -> QualityResult:
    """Check every suite, then write the results, findings, load counts, completeness and KRIs
    in one transaction. `stop_worker`: end the quality worker once every result is in, so that
    its memory (hundreds of MB at 100,000 patients) is free for the writes; the quality step
    asks for it, a caller that checks again soon does not."""
    cutoff = config.analysis.data_cutoff or today or dt.date.today()
    params = {"data_cutoff": cutoff, "checked_since": _previous_run(con)}
    # The quality worker (Great Expectations and the frames in flight: 0.3-0.4 GB at 100,000
    # patients) lives beside DuckDB until every result is in: DuckDB leaves it that much.
    try:
        with memory_beside(con, config.duckdb):
            checks = run_suites(
                con, load_suites(), params=params, sites=[s.id for s in config.sites],
                digest=suites_sha256(),
            )  # fmt: skip
    finally:
        if stop_worker:  # a frame may still be in it when a suite failed the step
            suites_worker.stop()
    result = QualityResult(checks[0].run_id if checks else "none", checks)
    with transaction(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS quality")
        create_or_upgrade(con, QUALITY_TABLES)  # a quality schema of an earlier version too
        columns: dict[str, list[Any]] = defaultdict(list)
        for check in checks:
            for key, value in asdict(check).items():
                if key != "failing_keys":
                    columns[key].append(value)
        insert_columns(con, results, columns)
        _write_findings(con, result)
        _write_load_counts(con)
        checked_at = checks[0].checked_at if checks else dt.datetime.now(dt.UTC).isoformat()
        write_completeness(con, result.run_id, checked_at)
        write_kris(
            con, run_id=result.run_id, checked_at=checked_at,
            sites=[s.id for s in config.sites],
            interval_days=config.analysis.assessment_interval_days,
            window_days=config.analysis.assessment_window_days,
        )  # fmt: skip
    return result


def _previous_run(con: duckdb.DuckDBPyConnection) -> str:
    """When the last quality run whose raw integrity checks all passed checked (ISO), or the
    epoch before the first one: what landed since is what those checks look at. A version
    they found wrong is so looked at again by every run until it is put right (the site stays
    held), not only by the run that found it."""
    if has_table(con, "quality", "results"):
        latest = con.execute(
            "SELECT max(checked_at) FROM (SELECT run_id, max(checked_at) AS checked_at "
            "FROM quality.results WHERE table_name = ? GROUP BY run_id HAVING bool_and(success))",
            [RAW_INTEGRITY_SUITE],
        ).fetchall()[0][0]
        if latest:
            return str(latest)
    return "1970-01-01T00:00:00+00:00"


def _write_findings(con: duckdb.DuckDBPyConnection, result: QualityResult) -> None:
    """The latest run's row-level findings: failing checks' keys, and every quarantined line."""
    con.execute(f"DELETE FROM {findings.fullname}")
    columns: dict[str, list[Any]] = defaultdict(list)
    for check in result.checks:
        if check.success or check.site_id is None:
            continue
        for key in check.failing_keys or (WHOLE_TABLE,):
            row = {
                "run_id": result.run_id, "site_id": check.site_id, "layer": check.layer,
                "table_name": check.table_name, "check_name": check.expectation,
                "severity": check.severity, "record_key": key,
                "what_is_wrong": check.description, "check_id": check.check_id,
            }  # fmt: skip
            for name, value in row.items():
                columns[name].append(value)
    insert_columns(con, findings, columns)
    # Lines not landed are data queries too: where they are (file and line) and why, never
    # their bytes nor their id (a Patient id can be the hospital's record number).
    con.execute(
        f"INSERT INTO {findings.fullname} "
        "SELECT ?, site_id, 'raw', 'raw.quarantine', reason, 'quarantine', "
        "source || ':' || line_number, coalesce(resource_type || ': ', '') || detail, "
        "'quarantine' FROM raw.quarantine",
        [result.run_id],
    )


def _write_load_counts(con: duckdb.DuckDBPyConnection) -> None:
    """Counts from raw.loads and raw.quarantine, so the published warehouse can show trends
    without holding raw."""
    con.execute(f"DELETE FROM {load_history.fullname}")
    con.execute(
        f"INSERT INTO {load_history.fullname} BY NAME SELECT load_id, site_id, resource_type, "
        "received, accepted, quarantined, started_at, new_versions FROM raw.loads"
    )
    # deletion files too: their lines are read and quarantined like any other (a new deletion
    # is new data, as a new version is)
    con.execute(
        f"INSERT INTO {load_history.fullname} BY NAME SELECT load_id, site_id, "
        "'deletion: ' || resource_type AS resource_type, received, received - quarantined AS "
        "accepted, quarantined, finished_at AS started_at, recorded AS new_versions "
        "FROM raw.deletion_loads"
    )
    con.execute(f"DELETE FROM {quarantine_counts.fullname}")
    # each quarantined content once, credited to the load that first brought it: a file re-sent
    # in another order or under another name adds no new bad line
    con.execute(
        f"INSERT INTO {quarantine_counts.fullname} SELECT load_id, site_id, resource_type, "
        "reason, count(*) FROM (SELECT *, row_number() OVER (PARTITION BY site_id, bytes_sha256 "
        "ORDER BY received_at, load_id, source, line_number) AS nth FROM raw.quarantine) "
        "WHERE nth = 1 GROUP BY ALL"
    )


def _describe(c: CheckResult) -> str:
    rows = c.unexpected_count if c.unexpected_count is not None else c.observed_value
    return f"{c.table_name} {c.expectation} at {c.site_id or 'all sites'} ({rows} rows)"


def _summary(failed: list[CheckResult]) -> str:
    """`N critical check(s) failed: table check at site (rows); ...` (the first five)."""
    parts = "; ".join(_describe(c) for c in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"{len(failed)} critical check(s) failed: {parts}{more}"


def refusal(result: QualityResult) -> str | None:
    """The one-line reason to refuse the whole publish (a critical failure that is not confined
    to one site), or None."""
    failed = [c for c in result.critical_failures if c.site_id is None]
    if not failed:
        return None
    return f"publish refused: {_summary(failed)}"


def held_sites(result: QualityResult) -> dict[str, str]:
    """Sites held back (site → the critical checks that failed for it): their last published
    data stay published while the other sites' data are published."""
    by_site: dict[str, list[CheckResult]] = defaultdict(list)
    for c in result.critical_failures:
        if c.site_id is not None:
            by_site[c.site_id].append(c)
    return {site: _summary(failed) for site, failed in sorted(by_site.items())}
