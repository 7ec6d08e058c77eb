"""PFS and eligibility counts of the analysis tables, each read by one function.

The analysis build's metadata, the command line's summary and the Dagster run report all show
them; reading them here keeps the definition (CNSR 0 is an event) in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rescue_pipeline.warehouse.database import has_table


@dataclass(frozen=True)
class PfsCounts:
    events: int = 0
    censored: int = 0


def pfs_counts(con: Any) -> PfsCounts:
    """Progression-free survival events and censored subjects in analysis.adtte."""
    if not has_table(con, "analysis", "adtte"):
        return PfsCounts()
    events, censored = con.execute(
        "SELECT count(*) FILTER (CNSR = 0), count(*) FILTER (CNSR <> 0) "
        "FROM analysis.adtte WHERE PARAMCD = 'PFS'"
    ).fetchall()[0]
    return PfsCounts(int(events), int(censored))


@dataclass(frozen=True)
class EligibilityCounts:
    eligible: int = 0
    not_eligible: int = 0
    unknown: int = 0


def eligibility_counts(con: Any) -> EligibilityCounts:
    """Subjects by overall eligibility (yes / no / unknown) in analysis.eligibility_summary."""
    if not has_table(con, "analysis", "eligibility_summary"):
        return EligibilityCounts()
    counts = dict(
        con.execute(
            "SELECT eligible, count(*) FROM analysis.eligibility_summary GROUP BY 1"
        ).fetchall()
    )
    return EligibilityCounts(
        int(counts.get("yes", 0)), int(counts.get("no", 0)), int(counts.get("unknown", 0))
    )


def latest_derivation(con: Any) -> dict[str, Any] | None:
    """The latest derivation run: when (derived_at) and with which settings (the cut-off
    resolved); None before the first one."""
    if not has_table(con, "analysis", "derivation_runs"):
        return None
    rows = con.execute(
        "SELECT derived_at, settings FROM analysis.derivation_runs ORDER BY derived_at DESC LIMIT 1"
    ).fetchall()  # fetchall: DuckDB 2 keeps a half-read result open and blocks the connection
    if not rows:
        return None
    derived_at, settings = rows[0]
    settings = json.loads(settings) if isinstance(settings, str) else settings
    return {"derived_at": derived_at, "settings": settings}
