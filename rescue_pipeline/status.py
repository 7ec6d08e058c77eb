"""`rescue status`: per site, what a data engineer on call needs to know, and whether anything
needs attention (exit code 5), for cron and monitoring.

Read from the working database (read-only): the last load and the last successful one
(ops.runs), watermarks (ops.watermarks), what is stored, quarantined and deleted (raw), the latest
quality run's failures (quality.results) and the last publish (quality.publications).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import duckdb

from rescue_pipeline.config import Config
from rescue_pipeline.quality.latest import failures_by_site, latest_publication, latest_quality_run


@dataclass
class SiteStatus:
    site_id: str
    last_success: dt.datetime | None = None
    last_load_status: str | None = None
    last_load_message: str | None = None
    watermark_oldest: dt.datetime | None = None
    watermark_newest: dt.datetime | None = None
    resources: int = 0
    quarantined: int = 0
    deleted: int = 0  # resources the site deleted, left out of raw.fhir_resources
    critical_failures: int = 0
    warnings: int = 0
    publication: str | None = None
    attention: list[str] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        return any(a.startswith("stale") or a == "never loaded" for a in self.attention)


def site_statuses(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    now: dt.datetime | None = None,
    writer_alive: bool = False,
) -> list[SiteStatus]:
    """Each configured site's status. `writer_alive`: a process holds the writer lock now (a
    'running' load is then really running; without one it was killed)."""
    now = now or dt.datetime.now(dt.UTC)
    out = {s.id: SiteStatus(s.id) for s in config.sites}
    tables = {
        f"{schema}.{name}"
        for schema, name in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables()"
        ).fetchall()
    }

    def rows(sql: str, table: str) -> list[tuple[Any, ...]]:
        return con.execute(sql).fetchall() if table in tables else []

    for site, success in rows(
        "SELECT site_id, max(finished_at) FROM ops.runs WHERE status = 'succeeded' GROUP BY 1",
        "ops.runs",
    ):
        if site in out:
            out[site].last_success = success
    for site, status, message in rows(
        "SELECT site_id, arg_max(status, started_at), arg_max(message, started_at) "
        "FROM ops.runs GROUP BY 1",
        "ops.runs",
    ):
        if site in out:
            out[site].last_load_status, out[site].last_load_message = status, message
    for site, oldest, newest in rows(
        "SELECT site_id, min(mark), max(mark) FROM ops.watermarks GROUP BY 1", "ops.watermarks"
    ):
        if site in out:
            out[site].watermark_oldest, out[site].watermark_newest = oldest, newest
    for site, n in rows(
        "SELECT site_id, count(*) FROM raw.fhir_resources GROUP BY 1", "raw.fhir_resource_versions"
    ):
        if site in out:
            out[site].resources = int(n)
    for site, n in rows(
        "SELECT site_id, count(*) FROM raw.quarantine GROUP BY 1", "raw.quarantine"
    ):
        if site in out:
            out[site].quarantined = int(n)
    for site, n in rows(
        "SELECT site_id, count(*) FROM (SELECT DISTINCT site_id, resource_type, resource_id "
        "FROM raw.deletions d WHERE NOT EXISTS (SELECT 1 FROM raw.fhir_resources r WHERE "
        "r.site_id = d.site_id AND r.resource_type = d.resource_type AND "
        "r.resource_id = d.resource_id)) GROUP BY 1",
        "raw.deletions",
    ):
        if site in out:
            out[site].deleted = int(n)
    for site, (critical, warnings) in failures_by_site(latest_quality_run(con)).items():
        if site in out:
            out[site].critical_failures, out[site].warnings = critical, warnings
    publication = latest_publication(con)
    for published in publication.sites if publication else ():
        if published.site_id in out:
            out[published.site_id].publication = published.status
    stale_after = dt.timedelta(hours=config.orchestration.stale_after_hours)
    for status in out.values():
        _judge(status, now, stale_after, writer_alive)
    return list(out.values())


def _judge(s: SiteStatus, now: dt.datetime, stale_after: dt.timedelta, writer_alive: bool) -> None:
    """What needs someone's attention, in words."""
    if s.last_success is None:
        s.attention.append("never loaded")
    elif now - s.last_success > stale_after:  # orchestration.stale_after_hours
        hours = (now - s.last_success).total_seconds() / 3600
        s.attention.append(f"stale: last successful load {hours:.0f} h ago")
    if s.last_load_status == "running" and not writer_alive:
        # a load holds the writer lock from start to end: 'running' with no holder is a load
        # whose process is gone
        s.attention.append(
            "last load killed: it still reads running but no process holds the working "
            "database (the next run closes its record)"
        )
    if s.last_load_status in ("failed", "interrupted"):
        s.attention.append(f"last load {s.last_load_status}: {s.last_load_message or ''}".strip())
    if s.critical_failures:
        s.attention.append(f"{s.critical_failures} critical check(s) failing")
    if s.publication == "held":
        s.attention.append("held back from the published warehouse")
