"""Key risk indicators per site, for centralised, risk-based monitoring (ICH E6(R3)).

Each indicator is a count over a denominator per site, computed at every quality run from the
working database (raw arrival times are only there) into quality.kri, so the published
warehouse and the sponsors' report carry the figures without raw. `flag` says which sites
stand out from the others: for a proportion, a funnel-plot z-score against the study-wide
proportion (binomial); for a rate per subject, a Poisson z-score; for a value in days, a fixed
threshold. Only the harmful direction is flagged (more quarantined lines, not fewer).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import duckdb

from rescue_pipeline.warehouse.quality_tables import kri as kri_table

Kind = Literal["proportion", "rate", "days"]
WARN_Z, FLAG_Z = 2.0, 3.0
# Below this many records a site's proportion or rate is not judged: with 2 subjects one event
# is 50 %, and a normal approximation would flag it.
MIN_DENOMINATOR = 10


@dataclass(frozen=True)
class Indicator:
    id: str
    title: str
    kind: Kind
    unit: str  # what the denominator counts
    explanation: str
    threshold_days: float | None = None  # kind "days": flagged above it


INDICATORS: tuple[Indicator, ...] = (
    Indicator("latency_days", "Data latency (median days from record to arrival)", "days",
              "records", "Median days from a record's clinical date (CA-125 sample, tumour "
              "assessment, dose) to its first arrival, for records dated since the site's first "
              "load (the backlog of the first load is not latency).", threshold_days=30),
    Indicator("quarantine_rate", "Quarantined lines", "proportion", "new lines",
              "Distinct lines quarantined, of the distinct lines received."),
    Indicator("unmapped_rate", "Unmapped or uncoded resources", "proportion", "resources",
              "Current resources left out of core for an unmapped or missing code."),
    Indicator("missing_key_fields", "Missing key fields", "proportion", "key-field values",
              "Key fields of the core tables left empty (the fields the derivations read)."),
    Indicator("open_queries", "Open data queries per subject", "rate", "subjects",
              "Records to correct after this quality run's failed checks, per trial subject "
              "(quarantined lines are counted by their own indicator)."),
    Indicator("oldest_query_days", "Age of the oldest open query (days)", "days", "checks",
              "Days since a check failing now has failed without a pass in between.",
              threshold_days=28),
    Indicator("randomised_not_eligible", "Randomised but not eligible or unknown", "proportion",
              "randomised subjects", "Randomised subjects whose derived eligibility is no or "
              "unknown."),
    Indicator("assessments_off_schedule", "Tumour assessments outside their window",
              "proportion", "assessments", "Assessments after randomisation further than the "
              "assessment window from the nearest scheduled visit (every interval days)."),
)  # fmt: skip
BY_ID = {i.id: i for i in INDICATORS}

# One SELECT per indicator: site_id, numerator, denominator (value for "days" indicators).
_SQL: dict[str, str] = {
    "latency_days": """
        WITH dated AS (
            SELECT site_id, source_type, source_id, measured_on AS day
            FROM core.ca125_measurements
            UNION ALL SELECT site_id, source_type, source_id, assessed_on
            FROM core.tumour_assessments
            UNION ALL SELECT site_id, source_type, source_id, started_on
            FROM core.drug_administrations
        ), arrived AS (
            SELECT site_id, resource_type, resource_id,
                   arg_min(load_id, received_at) AS load_id, min(received_at) AS received_at
            FROM raw.fhir_resource_versions GROUP BY ALL
        ), first_load AS (
            SELECT site_id, arg_min(load_id, started_at) AS load_id FROM raw.loads GROUP BY 1
        )
        SELECT d.site_id, median(date_diff('day', d.day, a.received_at::DATE)), count(*)
        FROM dated d JOIN arrived a ON a.site_id = d.site_id
         AND a.resource_type = d.source_type AND a.resource_id = d.source_id
        JOIN first_load f ON f.site_id = d.site_id
        -- records that arrived after the site's first load (its backlog is not latency), old
        -- ones included: they are the slowest; dated no later than they arrived (a record from
        -- the future is a date error, checked elsewhere)
        WHERE a.load_id <> f.load_id AND d.day <= a.received_at::DATE
        GROUP BY 1""",
    "quarantine_rate": """
        WITH q AS (SELECT site_id, count(DISTINCT bytes_sha256) AS n FROM raw.quarantine
                   GROUP BY 1),
             v AS (SELECT site_id, count(*) AS n FROM raw.fhir_resource_versions GROUP BY 1)
        SELECT coalesce(q.site_id, v.site_id), coalesce(q.n, 0),
               coalesce(q.n, 0) + coalesce(v.n, 0)
        FROM q FULL JOIN v ON v.site_id = q.site_id""",
    "unmapped_rate": """
        SELECT site_id, sum(resources) FILTER (WHERE reason IN ('unmapped_code', 'no_code')),
               sum(resources)
        FROM core.resource_accounting GROUP BY 1""",
    "missing_key_fields": """
        SELECT site_id, sum(rows - filled), sum(rows) FROM quality.completeness
        WHERE run_id = $run_id GROUP BY 1""",
    "open_queries": """
        WITH f AS (  -- records to correct from failed checks (quarantined lines have their
                     -- own indicator)
            SELECT site_id, count(DISTINCT record_key) AS n FROM quality.findings
            WHERE layer <> 'raw' GROUP BY 1
        ), s AS (SELECT site_id, count(*) AS n FROM core.subjects GROUP BY 1)
        SELECT coalesce(s.site_id, f.site_id), coalesce(f.n, 0), coalesce(s.n, 0)
        FROM s FULL JOIN f ON f.site_id = s.site_id""",
    "oldest_query_days": """
        WITH failing AS (
            SELECT DISTINCT site_id, check_id FROM quality.results
            WHERE run_id = $run_id AND NOT success AND site_id IS NOT NULL
        ), last_pass AS (
            SELECT r.site_id, r.check_id, max(r.checked_at) AS at FROM quality.results r
            JOIN failing f USING (site_id, check_id) WHERE r.success GROUP BY ALL
        ), since AS (
            SELECT r.site_id, r.check_id, min(r.checked_at) AS first_failed
            FROM quality.results r JOIN failing f USING (site_id, check_id)
            LEFT JOIN last_pass p USING (site_id, check_id)
            WHERE NOT r.success AND (p.at IS NULL OR r.checked_at > p.at) GROUP BY ALL
        )
        SELECT site_id,
               max(date_diff('day', first_failed::TIMESTAMPTZ, $now::TIMESTAMPTZ)),
               count(*)
        FROM since GROUP BY 1""",
    "randomised_not_eligible": """
        SELECT s.site_id, count(*) FILTER (WHERE coalesce(e.eligible, 'unknown') <> 'yes'),
               count(*)
        FROM core.subjects s LEFT JOIN analysis.eligibility_summary e ON e.usubjid = s.usubjid
        WHERE s.randomised_on IS NOT NULL AND s.arm IS NOT NULL GROUP BY 1""",
    "assessments_off_schedule": """
        WITH a AS (
            SELECT s.site_id,
                   date_diff('day', s.randomised_on, t.assessed_on) AS since
            FROM core.tumour_assessments t JOIN core.subjects s ON s.usubjid = t.usubjid
            WHERE s.randomised_on IS NOT NULL AND t.assessed_on > s.randomised_on
        )
        SELECT site_id,
               count(*) FILTER (WHERE abs(since - greatest(round(since / $interval), 1)
                                      * $interval) > $window),
               count(*)
        FROM a GROUP BY 1""",
}


def write_kris(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    checked_at: str,
    sites: Sequence[str],
    interval_days: int,
    window_days: int,
) -> None:
    """Every indicator for every site (a site with nothing to count gets 0 of 0)."""
    params: dict[str, Any] = {"run_id": run_id, "now": checked_at, "interval": interval_days,
                              "window": window_days}  # fmt: skip
    rows: list[tuple[Any, ...]] = []
    for indicator in INDICATORS:
        sql = _SQL[indicator.id]
        needed = {k: v for k, v in params.items() if f"${k}" in sql}
        try:
            found = {site: (num, den) for site, num, den in con.execute(sql, needed).fetchall()}
        except duckdb.CatalogException:  # a table the indicator reads is missing (a failed
            found = {}  # build): nothing to count, and the quality step goes on
        for site in sorted(set(sites) | {s for s in found if s is not None}):
            num, den = found.get(site, (0, 0))
            rows.append((run_id, checked_at, site, indicator.id, float(num or 0), int(den or 0)))
    con.executemany(
        f"INSERT INTO {kri_table.fullname} (run_id, checked_at, site_id, kri, numerator, "
        "denominator) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


Flag = Literal["ok", "warn", "flag", "n/a"]


@dataclass(frozen=True)
class SiteValue:
    site_id: str
    numerator: float
    denominator: int
    value: float | None  # the proportion, rate or days; None with nothing to count
    z: float | None  # against the study-wide value (proportion, rate); None otherwise
    flag: Flag


@dataclass(frozen=True)
class Assessed:
    indicator: Indicator
    study_value: float | None
    sites: tuple[SiteValue, ...]

    @property
    def flagged(self) -> list[str]:
        return [s.site_id for s in self.sites if s.flag == "flag"]


def _by_limit(value: float, warn: float, flag: float) -> Flag:
    return "flag" if value > flag else "warn" if value > warn else "ok"


def z_score(kind: Kind, numerator: float, denominator: int, p0: float | None) -> float | None:
    """How far a site's count lies above the study-wide value, in standard errors: binomial
    for a proportion, Poisson for a rate; None where the spread is zero or undefined."""
    if not denominator or p0 is None or p0 <= 0 or (kind == "proportion" and p0 >= 1):
        return None
    if kind == "rate":
        expected = p0 * denominator
        return (numerator - expected) / math.sqrt(expected)
    return (numerator / denominator - p0) / math.sqrt(p0 * (1 - p0) / denominator)


def assess(indicator: Indicator, counts: Iterable[tuple[str, float, int]]) -> Assessed:
    """Each site's value and whether it stands out from the study-wide one.

    Proportion: z = (p - p0) / sqrt(p0 (1 - p0) / n), the funnel plot's limits at 2 and 3.
    Rate: z = (O - E) / sqrt(E) with E = n x the study-wide rate (Poisson); a site with fewer
    than MIN_DENOMINATOR records is not judged. Days: above the
    indicator's threshold a warning, and a flag when also at least twice the other sites'
    median (or there is no other site). Only the harmful side flags.
    """
    rows = list(counts)
    if indicator.kind == "days":
        limit = indicator.threshold_days or math.inf
        days = []
        for site, n, d in rows:
            others = _median([r[1] for r in rows if r[2] and r[0] != site])
            flag: Flag = "n/a" if not d else "ok" if n <= limit else (
                "flag" if others is None or n >= 2 * others else "warn")  # fmt: skip
            days.append(SiteValue(site, n, d, n if d else None, None, flag))
        return Assessed(indicator, _median([r[1] for r in rows if r[2]]), tuple(days))
    num, den = sum(r[1] for r in rows), sum(r[2] for r in rows)
    p0 = num / den if den else None
    out = []
    for site, n, d in rows:
        z = z_score(indicator.kind, n, d, p0)
        mark: Flag = (
            "n/a" if d < MIN_DENOMINATOR
            else _by_limit(z, WARN_Z, FLAG_Z) if z is not None else "ok"
        )  # fmt: skip
        out.append(SiteValue(site, n, d, n / d if d else None, z, mark))
    return Assessed(indicator, p0, tuple(out))


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def assess_all(rows: Iterable[tuple[str, str, float, int]]) -> list[Assessed]:
    """Every indicator of a quality run, from its quality.kri rows (site, kri, num, den)."""
    by_kri: dict[str, list[tuple[str, float, int]]] = {}
    for site, kri, num, den in rows:
        by_kri.setdefault(kri, []).append((site, float(num), int(den)))
    return [assess(i, sorted(by_kri[i.id])) for i in INDICATORS if i.id in by_kri]


def describe(values: Mapping[str, Assessed]) -> str:
    """One line: which sites stand out on which indicator."""
    parts = [f"{a.indicator.id}: {', '.join(a.flagged)}" for a in values.values() if a.flagged]
    return "; ".join(parts) or "no site stands out"
