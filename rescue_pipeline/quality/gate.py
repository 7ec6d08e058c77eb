"""The quality step and the gate before publishing.

Every run's results land in quality.results (in the working database; the publish copies them).
A failed critical check refuses the publish with the checks, sites and row counts named, so
analysts never see a warehouse that failed its critical checks. (Keeping a failing site's last
published data while publishing the others comes with per-site publishing.)
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from rescue_pipeline.config import Config
from rescue_pipeline.quality.suites import CheckResult, load_suites, run_suites
from rescue_pipeline.warehouse.database import ddl, insert_columns
from rescue_pipeline.warehouse.quality_tables import QUALITY_TABLES, results


class PublishRefused(RuntimeError):
    """A critical data-quality check failed: nothing is published (exit code 3)."""


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
    con: duckdb.DuckDBPyConnection, config: Config, *, today: dt.date | None = None
) -> QualityResult:
    cutoff = config.analysis.data_cutoff or today or dt.date.today()
    checks = run_suites(con, load_suites(), params={"data_cutoff": cutoff})
    result = QualityResult(checks[0].run_id if checks else "none", checks)
    con.execute("CREATE SCHEMA IF NOT EXISTS quality")
    for statement in ddl(QUALITY_TABLES):
        con.execute(statement)
    columns: dict[str, list[Any]] = defaultdict(list)
    for check in checks:
        for key, value in asdict(check).items():
            columns[key].append(value)
    insert_columns(con, results, columns)
    return result


def refusal(result: QualityResult) -> str | None:
    """The one-line reason to refuse the publish, or None when every critical check passed."""
    failed = result.critical_failures
    if not failed:
        return None
    parts = [
        f"{c.table_name} {c.expectation} at {c.site_id or 'all sites'}"
        f" ({c.unexpected_count if c.unexpected_count is not None else c.observed_value} rows)"
        for c in failed[:5]
    ]
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"publish refused: {len(failed)} critical check(s) failed: {'; '.join(parts)}{more}"
