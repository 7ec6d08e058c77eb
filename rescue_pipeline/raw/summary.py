"""What the raw layer holds, per site and type, read back from the database itself.

Summaries are computed from raw.loads and the stored rows, not from counters kept in memory,
so what the CLI prints is what a later query will find.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class TypeSummary:
    site_id: str
    resource_type: str
    received: int
    accepted: int
    quarantined: int
    new_versions: int


def latest_loads(con: duckdb.DuckDBPyConnection, site_ids: list[str]) -> dict[str, str]:
    """The newest succeeded load per site (site → load_id)."""
    rows = con.execute(
        "SELECT site_id, arg_max(load_id, started_at) FROM ops.runs "
        "WHERE status = 'succeeded' AND list_contains($sites, site_id) GROUP BY site_id",
        {"sites": site_ids},
    ).fetchall()
    return {site: load for site, load in rows}


def load_counts(con: duckdb.DuckDBPyConnection, load_ids: list[str]) -> list[TypeSummary]:
    rows = con.execute(
        "SELECT site_id, resource_type, received, accepted, quarantined, new_versions "
        "FROM raw.loads WHERE list_contains($loads, load_id) ORDER BY site_id, resource_type",
        {"loads": load_ids},
    ).fetchall()
    return [TypeSummary(*row) for row in rows]


def quarantine_reasons(
    con: duckdb.DuckDBPyConnection, site_ids: list[str]
) -> list[tuple[str, str, int]]:
    """(site, reason, lines) over everything quarantined so far."""
    return [
        (site, reason, int(n))
        for site, reason, n in con.execute(
            "SELECT site_id, reason, count(*) FROM raw.quarantine "
            "WHERE list_contains($sites, site_id) GROUP BY ALL ORDER BY 1, 2",
            {"sites": site_ids},
        ).fetchall()
    ]


def stored(con: duckdb.DuckDBPyConnection, site_ids: list[str]) -> dict[str, tuple[int, int, int]]:
    """site → (current resources, stored versions, quarantined lines) over all loads."""
    rows = con.execute(
        """
        WITH v AS (SELECT site_id, count(*) AS versions,
                          count(DISTINCT (resource_type, resource_id)) AS resources
                   FROM raw.fhir_resource_versions GROUP BY site_id),
             q AS (SELECT site_id, count(*) AS quarantined FROM raw.quarantine GROUP BY site_id)
        SELECT s.site_id, coalesce(v.resources, 0), coalesce(v.versions, 0),
               coalesce(q.quarantined, 0)
        FROM unnest($sites) AS s(site_id)
        LEFT JOIN v USING (site_id) LEFT JOIN q USING (site_id)
        """,
        {"sites": site_ids},
    ).fetchall()
    return {site: (int(r), int(v), int(q)) for site, r, v, q in rows}


def deletions(con: duckdb.DuckDBPyConnection, site_ids: list[str]) -> dict[str, int]:
    """site → deletions recorded over all loads (raw.deletions), for sites with any."""
    rows = con.execute(
        "SELECT site_id, count(*) FROM raw.deletions WHERE list_contains($sites, site_id) "
        "GROUP BY site_id",
        {"sites": site_ids},
    ).fetchall()
    return {site: int(n) for site, n in rows}
