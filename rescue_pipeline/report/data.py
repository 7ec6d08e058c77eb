"""What the sponsors' report shows, read from the published warehouse only (never raw).

Everything here is a count or a code: no names, no subject-level dates, no subject ids, and
no outcome by arm (sponsors judge data quality, not results, until the trial's analysis). The
screening flow counts subjects allocated to each arm, as CONSORT does; nothing else is split
by arm. Enrolment is counted per quarter, never a subject's date.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import duckdb

from rescue_pipeline.analysis.counts import latest_derivation
from rescue_pipeline.quality.gate import QualityResult
from rescue_pipeline.quality.kri import Assessed, assess_all
from rescue_pipeline.quality.latest import latest_publication, latest_quality_run, run_checked_at
from rescue_pipeline.quality.suites import CheckResult, Suite, load_suites
from rescue_pipeline.warehouse.database import has_table, table_columns

ELIGIBILITY_STATUSES = ("yes", "no", "unknown")
# One definition of randomised everywhere in the report: an arm and its date (as ADSL's RANDFL).
RANDOMISED = "randomised_on IS NOT NULL AND arm IS NOT NULL"
CRITERION_STATUSES = ("met", "not_met", "unknown")


@dataclass
class LoadCounts:
    load_id: str
    started_at: dt.datetime
    received: int  # lines read, whatever they held
    accepted: int
    quarantined: int  # lines quarantined by this load, ones quarantined before included
    new_versions: int = 0  # accepted lines that were versions not held before
    new_quarantined: int = 0  # lines quarantined for the first time

    @property
    def already_held(self) -> int:
        """Lines read again (a full reload, a repeated file): held already, not new data."""
        return max(self.received - self.new_versions - self.new_quarantined, 0)


@dataclass(frozen=True)
class Totals:
    """A site's lines over all its loads, each line counted once."""

    read: int  # every line of every load, re-reads included
    new_versions: int  # distinct resource versions landed
    quarantined: int  # distinct lines quarantined (= the per-reason table)
    already_held: int  # lines read again

    @property
    def new_lines(self) -> int:
        return self.new_versions + self.quarantined


@dataclass
class SiteReport:
    site_id: str
    status: str = "not published"
    data_as_of: dt.datetime | None = None
    held_reason: str | None = None
    loads: list[LoadCounts] = field(default_factory=list)
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    # load_id -> reason -> lines
    quarantine_trend: dict[str, dict[str, int]] = field(default_factory=dict)
    subjects: int = 0
    randomised: int = 0
    withdrawn: int = 0  # consent to data transfer withdrawn: left out of core and analysis
    deleted: int = 0  # resources deleted at the site: left out of core and analysis
    # resource type -> reason (`used` or why not) -> current resources (core.resource_accounting)
    accounting: dict[str, dict[str, int]] = field(default_factory=dict)
    eligibility: dict[str, int] = field(default_factory=dict)
    # criterion -> status -> subjects
    criteria: dict[str, dict[str, int]] = field(default_factory=dict)
    # (table, field) -> (rows, filled) at the latest run
    completeness: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    ca125_units: list[tuple[str, bool, int]] = field(default_factory=list)
    # (system, code, display, resources not used, resources recognised otherwise)
    unmapped_codes: list[tuple[str, str, str, int, int]] = field(default_factory=list)
    open_queries: dict[str, int] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    @property
    def latest_load(self) -> LoadCounts | None:
        return self.loads[-1] if self.loads else None

    @property
    def totals(self) -> Totals:
        return Totals(
            read=sum(x.received for x in self.loads),
            new_versions=sum(x.new_versions for x in self.loads),
            quarantined=sum(self.quarantine_by_reason.values()),
            already_held=sum(x.already_held for x in self.loads),
        )

    @property
    def loads_covered(self) -> str:
        """Which loads the site's counts cover, in words."""
        if not self.loads:
            return "no load yet"
        first, last = self.loads[0].started_at, self.loads[-1].started_at
        span = f"{first:%Y-%m-%d %H:%M}" + (f" to {last:%Y-%m-%d %H:%M}" if last != first else "")
        return f"{len(self.loads)} load{'s' if len(self.loads) > 1 else ''}, {span} UTC"

    @property
    def completeness_share(self) -> float | None:
        rows = sum(r for r, _ in self.completeness.values())
        return sum(f for _, f in self.completeness.values()) / rows if rows else None


@dataclass
class SuiteReport:
    suite: Suite
    # per expectation (in the suite's order): site -> check row
    results: list[tuple[dict[str, Any], dict[str, CheckResult]]] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.suite.name.replace(".", "-")

    @property
    def failures(self) -> int:
        return sum(1 for _, by_site in self.results for c in by_site.values() if not c.success)


@dataclass
class Flow:
    """Screening to randomisation, CONSORT style: subjects at each step (counts only)."""

    screened: int = 0
    eligible: int = 0
    not_eligible: int = 0
    unknown: int = 0
    failed_by: dict[str, int] = field(default_factory=dict)  # criterion -> subjects failing it
    unknown_by: dict[str, int] = field(default_factory=dict)  # criterion -> subjects unknown
    randomised: int = 0
    by_arm: dict[str, int] = field(default_factory=dict)  # allocation, never a result
    randomised_not_eligible: int = 0  # derived eligibility no
    randomised_unknown: int = 0  # derived eligibility unknown

    @property
    def randomised_eligible(self) -> int:
        return self.randomised - self.randomised_not_eligible - self.randomised_unknown

    @property
    def eligible_not_randomised(self) -> int:
        return self.eligible - self.randomised_eligible


@dataclass
class ReportData:
    study_id: str
    generated_at: dt.datetime
    quality_run: str | None
    checked_at: str | None
    sites: list[SiteReport]
    suites: list[SuiteReport]
    data_cutoff: str | None = None
    flow: Flow = field(default_factory=Flow)
    # site -> [(month YYYY-MM, subjects randomised that month)]
    enrolment: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    kris: list[Assessed] = field(default_factory=list)


def read_report(
    con: duckdb.DuckDBPyConnection, *, study_id: str, site_ids: list[str]
) -> ReportData:
    """Everything the report shows, from the published warehouse `con`."""
    quality = latest_quality_run(con)
    run_id = quality.run_id if quality else None
    known = set(site_ids)
    for table in ("quality.load_history", "quality.results", "core.subjects"):
        known |= {s for (s,) in con.execute(f"SELECT DISTINCT site_id FROM {table}").fetchall()}
    sites = {s: SiteReport(s) for s in sorted(known - {None})}
    _publications(con, sites)
    _loads(con, sites)
    _subjects(con, sites)
    _accounting(con, sites)
    _completeness(con, sites, run_id)
    _codes(con, sites)
    checks = _checks(quality, sites)
    return ReportData(
        study_id=study_id,
        generated_at=dt.datetime.now(dt.UTC),
        quality_run=run_id,
        checked_at=run_checked_at(quality) if quality else None,
        sites=list(sites.values()),
        suites=_suites(checks),
        data_cutoff=_data_cutoff(con),
        flow=_flow(con),
        enrolment=_enrolment(con),
        kris=_kris(con, run_id),
    )


def _data_cutoff(con: duckdb.DuckDBPyConnection) -> str | None:
    """The data cut-off of the latest derivation (its recorded settings)."""
    run = latest_derivation(con)
    settings = run["settings"] if run else None
    cutoff = settings.get("data_cutoff") if isinstance(settings, dict) else None
    return str(cutoff) if cutoff else None


def _flow(con: duckdb.DuckDBPyConnection) -> Flow:
    """Screened, eligible / not / unknown with the criteria behind them, randomised per arm."""
    flow = Flow()
    for eligible, failed, unknown, arm, randomised, n in con.execute(
        "SELECT e.eligible, e.failed_criteria, e.unknown_criteria, a.ARMCD, a.RANDFL = 'Y', "
        "count(*) "
        "FROM analysis.eligibility_summary e LEFT JOIN analysis.adsl a ON a.USUBJID = e.usubjid "
        "GROUP BY ALL"
    ).fetchall():
        flow.screened += n
        if eligible == "yes":
            flow.eligible += n
        elif eligible == "no":
            flow.not_eligible += n
            for criterion in filter(None, (c.strip() for c in (failed or "").split(","))):
                flow.failed_by[criterion] = flow.failed_by.get(criterion, 0) + n
        else:
            flow.unknown += n
            for criterion in filter(None, (c.strip() for c in (unknown or "").split(","))):
                flow.unknown_by[criterion] = flow.unknown_by.get(criterion, 0) + n
        if arm and randomised:
            flow.randomised += n
            flow.by_arm[arm] = flow.by_arm.get(arm, 0) + n
            if eligible == "no":
                flow.randomised_not_eligible += n
            elif eligible != "yes":
                flow.randomised_unknown += n
    return flow


def _enrolment(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, int]]]:
    """Subjects randomised per site and calendar quarter (counts: a quarter is coarse enough
    that no subject's randomisation date can be read from it)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for site_id, quarter, n in con.execute(
        "SELECT site_id, strftime(randomised_on, '%Y') || '-Q' || quarter(randomised_on), "
        f"count(*) FROM core.subjects WHERE {RANDOMISED} GROUP BY ALL ORDER BY 1, 2"
    ).fetchall():
        out.setdefault(site_id, []).append((quarter, int(n)))
    return out


def _kris(con: duckdb.DuckDBPyConnection, run_id: str | None) -> list[Assessed]:
    if run_id is None or not has_table(con, "quality", "kri"):
        return []
    return assess_all(
        con.execute(
            "SELECT site_id, kri, numerator, denominator FROM quality.kri WHERE run_id = ? "
            "ORDER BY site_id",
            [run_id],
        ).fetchall()
    )


def _publications(con: duckdb.DuckDBPyConnection, sites: dict[str, SiteReport]) -> None:
    publication = latest_publication(con)
    for published in publication.sites if publication else ():
        if published.site_id in sites:
            site = sites[published.site_id]
            site.status, site.data_as_of = published.status, published.data_as_of
            site.held_reason = published.reason


def _loads(con: duckdb.DuckDBPyConnection, sites: dict[str, SiteReport]) -> None:
    # new_versions: a published warehouse from before the column has none (then 0: "unknown")
    has_new = "new_versions" in table_columns(con, "quality", "load_history")
    new_versions = "sum(new_versions)" if has_new else "0"
    by_load: dict[tuple[str, str], LoadCounts] = {}
    for load_id, site_id, started, received, accepted, quarantined, new in con.execute(
        "SELECT load_id, site_id, min(started_at), sum(received), sum(accepted), "
        f"sum(quarantined), {new_versions} FROM quality.load_history GROUP BY 1, 2 ORDER BY 3"
    ).fetchall():
        counts = LoadCounts(load_id, started, int(received), int(accepted), int(quarantined),
                            int(new or 0))  # fmt: skip
        sites[site_id].loads.append(counts)
        by_load[(site_id, load_id)] = counts
    for load_id, site_id, reason, lines in con.execute(
        "SELECT load_id, site_id, reason, sum(lines) FROM quality.quarantine_counts GROUP BY ALL"
    ).fetchall():
        site = sites[site_id]
        site.quarantine_trend.setdefault(load_id, {})[reason] = int(lines)
        site.quarantine_by_reason[reason] = site.quarantine_by_reason.get(reason, 0) + int(lines)
        if (site_id, load_id) in by_load:  # first quarantined by this load
            by_load[(site_id, load_id)].new_quarantined += int(lines)


def _subjects(con: duckdb.DuckDBPyConnection, sites: dict[str, SiteReport]) -> None:
    for site_id, subjects, randomised in con.execute(
        f"SELECT site_id, count(*), count(*) FILTER ({RANDOMISED}) FROM core.subjects GROUP BY 1"
    ).fetchall():
        sites[site_id].subjects, sites[site_id].randomised = int(subjects), int(randomised)
    for site_id, n in con.execute(
        "SELECT site_id, sum(resources) FROM core.excluded_resources "
        "WHERE reason = 'consent_withdrawn' GROUP BY 1"
    ).fetchall():
        sites[site_id].withdrawn = int(n)
    for site_id, n in con.execute(
        "SELECT site_id, sum(resources) FROM core.excluded_resources "
        "WHERE reason = 'deleted' GROUP BY 1"
    ).fetchall():
        sites[site_id].deleted = int(n)
    for site_id, eligible, n in con.execute(  # pooled across arms, by design
        "SELECT site_id, eligible, count(*) FROM analysis.eligibility_summary GROUP BY ALL"
    ).fetchall():
        sites[site_id].eligibility[eligible] = int(n)
    for site_id, criterion, status, n in con.execute(
        "SELECT site_id, criterion, status, count(*) FROM analysis.eligibility "
        "GROUP BY site_id, criterion, status "
        "ORDER BY criterion NOT LIKE 'IN%', criterion"  # IN01..IN06, then EX01..EX08
    ).fetchall():
        sites[site_id].criteria.setdefault(criterion, {})[status] = int(n)


def _accounting(con: duckdb.DuckDBPyConnection, sites: dict[str, SiteReport]) -> None:
    for site_id, rtype, reason, n in con.execute(
        "SELECT site_id, resource_type, reason, resources FROM core.resource_accounting "
        "ORDER BY 1, 2, 3"
    ).fetchall():
        if site_id in sites:
            sites[site_id].accounting.setdefault(rtype, {})[reason] = int(n)


def _completeness(
    con: duckdb.DuckDBPyConnection, sites: dict[str, SiteReport], run_id: str | None
) -> None:
    for site_id, table, fld, rows, filled in con.execute(
        "SELECT site_id, table_name, field, rows, filled FROM quality.completeness "
        "WHERE run_id = ? ORDER BY table_name",
        [run_id],
    ).fetchall():
        sites[site_id].completeness[(table, fld)] = (int(rows), int(filled))


def _codes(con: duckdb.DuckDBPyConnection, sites: dict[str, SiteReport]) -> None:
    for site_id, unit, convertible, n in con.execute(
        "SELECT site_id, coalesce(original_unit, '(none)'), coalesce(unit_convertible, false), "
        "count(*) FROM core.ca125_measurements GROUP BY ALL ORDER BY 4 DESC"
    ).fetchall():
        sites[site_id].ca125_units.append((unit, bool(convertible), int(n)))
    # Codes whose resources could not be used first; then codes beside a recognised one.
    for site_id, system, code, display, unused, otherwise in con.execute(
        "SELECT site_id, system, code, coalesce(display, ''), "
        "sum(resources - resources_recognised_otherwise), sum(resources_recognised_otherwise) "
        "FROM core.unmapped_codes GROUP BY ALL ORDER BY 5 DESC, 6 DESC, 2, 3"
    ).fetchall():
        sites[site_id].unmapped_codes.append(
            (system or "(no system)", code, display, int(unused), int(otherwise))
        )
    for site_id, severity, n in con.execute(
        "SELECT site_id, severity, count(*) FROM quality.findings GROUP BY ALL"
    ).fetchall():
        sites[site_id].open_queries[severity] = int(n)


def _checks(quality: QualityResult | None, sites: dict[str, SiteReport]) -> list[CheckResult]:
    ordered = sorted(quality.checks if quality else [], key=lambda c: (c.severity, c.table_name))
    for c in ordered:
        if c.site_id in sites:
            sites[c.site_id].checks.append(c)
    return ordered


def _suites(checks: list[CheckResult]) -> list[SuiteReport]:
    by_id: dict[str | None, dict[str, CheckResult]] = defaultdict(dict)
    for c in checks:
        by_id[c.check_id][c.site_id or "all sites"] = c
    reports = []
    for suite in load_suites():
        report = SuiteReport(suite)
        for e in suite.expectations:
            report.results.append((e, by_id.get(e["id"], {})))
        reports.append(report)
    return reports
