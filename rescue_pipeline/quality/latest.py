"""The latest quality run and the latest publication, each read by one function.

The command line, `rescue status`, the sponsors' report and the Dagster checks all show these;
reading them here keeps "latest" meaning the same thing everywhere. Each reader takes any
connection that holds the tables (the working database or the published one) and returns
None when they are absent or empty, as on a first run. (The PFS and eligibility counts are
read by `analysis.counts`, beside the tables they count.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Any

from rescue_pipeline.quality.gate import QualityResult
from rescue_pipeline.quality.suites import CheckResult
from rescue_pipeline.warehouse.database import has_table, table_columns


def latest_quality_run(con: Any) -> QualityResult | None:
    """Every check of the latest quality run (by time checked), as quality.results holds it."""
    if not has_table(con, "quality", "results"):
        return None
    # a warehouse of an earlier version lacks the newer columns: they read as None
    present = table_columns(con, "quality", "results")
    columns = [f.name for f in dataclasses.fields(CheckResult) if f.name in present]
    order = "check_id, " if "check_id" in present else "table_name, expectation, "
    rows = con.execute(
        f"SELECT {', '.join(columns)} FROM quality.results WHERE run_id = "
        "(SELECT arg_max(run_id, checked_at) FROM quality.results) "
        f"ORDER BY {order}site_id NULLS FIRST"
    ).fetchall()
    if not rows:
        return None
    checks = [CheckResult(**dict(zip(columns, row, strict=True))) for row in rows]
    return QualityResult(checks[0].run_id, checks)


def run_checked_at(result: QualityResult) -> str | None:
    """When the run checked (its latest check's time, UTC ISO 8601)."""
    return max((c.checked_at for c in result.checks), default=None)


def failures_by_site(result: QualityResult | None) -> dict[str | None, tuple[int, int]]:
    """site → (critical failures, warnings) of a quality run; None is the study-wide checks."""
    counts: Counter[tuple[str | None, bool]] = Counter()
    for c in result.checks if result else []:
        if not c.success:
            counts[(c.site_id, c.severity == "critical")] += 1
    sites = {site for site, _ in counts}
    return {s: (counts[(s, True)], counts[(s, False)]) for s in sites}


@dataclasses.dataclass(frozen=True)
class SitePublication:
    site_id: str
    status: str  # published or held
    data_as_of: dt.datetime | None
    reason: str | None


@dataclasses.dataclass(frozen=True)
class Publication:
    published_at: dt.datetime
    sites: tuple[SitePublication, ...]

    @property
    def held(self) -> list[SitePublication]:
        return [s for s in self.sites if s.status == "held"]

    def status_of(self, site_id: str) -> str | None:
        return next((s.status for s in self.sites if s.site_id == site_id), None)


def latest_publication(con: Any) -> Publication | None:
    """Whose data the latest publish holds, per site (quality.publications)."""
    if not has_table(con, "quality", "publications"):
        return None
    rows = con.execute(
        "SELECT published_at, site_id, status, data_as_of, reason FROM quality.publications "
        "WHERE published_at = (SELECT max(published_at) FROM quality.publications) ORDER BY 2"
    ).fetchall()
    if not rows:
        return None
    return Publication(rows[0][0], tuple(SitePublication(*row[1:]) for row in rows))
