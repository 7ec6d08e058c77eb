"""ops.bulk_jobs: the Bulk Data exports we asked for, so one in progress outlives our process.

A real export can take hours to weeks. The job is written (and committed: every statement here
runs in autocommit unless the caller holds a transaction) before its first poll, so a run that
stops for any reason leaves it for the next run to resume. At most one job per site is in state
`polling`; the others are history (complete, abandoned, failed) with the reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from rescue_pipeline.extract.watermarks import utc


@dataclass(frozen=True)
class BulkJob:
    """One export as kicked off: enough to poll it again from another process."""

    site_id: str
    kicked_off_at: dt.datetime
    status_url: str
    kickoff_url: str  # redacted, for people; never requested again
    level: str
    types: tuple[str, ...]
    since: dt.datetime | None
    load_id: str


_COLUMNS = (
    "site_id, kicked_off_at, status_url, kickoff_url, level, resource_types, since, load_id, state"
)


def polling_job(con: duckdb.DuckDBPyConnection, site_id: str) -> BulkJob | None:
    """The site's export still in progress, if a run left one."""
    rows = con.execute(
        "SELECT kicked_off_at, status_url, kickoff_url, level, resource_types, since, load_id "
        "FROM ops.bulk_jobs WHERE site_id = ? AND state = 'polling' "
        "ORDER BY kicked_off_at DESC LIMIT 1",
        [site_id],
    ).fetchall()
    if not rows:
        return None
    kicked, status_url, kickoff_url, level, types, since, load_id = rows[0]
    return BulkJob(
        site_id=site_id,
        kicked_off_at=utc(kicked),
        status_url=status_url,
        kickoff_url=kickoff_url,
        level=level,
        types=tuple(t for t in types.split(",") if t),
        since=utc(since) if since is not None else None,
        load_id=load_id,
    )


def store_job(con: duckdb.DuckDBPyConnection, job: BulkJob) -> None:
    """Record a new export in state polling (committed when this returns, outside a transaction)."""
    con.execute(
        f"INSERT INTO ops.bulk_jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'polling')",
        [
            job.site_id,
            job.kicked_off_at,
            job.status_url,
            job.kickoff_url,
            job.level,
            ",".join(job.types),
            job.since,
            job.load_id,
        ],
    )


def note_poll(
    con: duckdb.DuckDBPyConnection, job: BulkJob, progress: str | None, at: dt.datetime
) -> None:
    """What the server last said of the export (shown by `rescue query --work`)."""
    con.execute(
        "UPDATE ops.bulk_jobs SET progress = ?, polled_at = ? "
        "WHERE site_id = ? AND kicked_off_at = ?",
        [progress, at, job.site_id, job.kicked_off_at],
    )


@dataclass(frozen=True)
class JobOutcome:
    """How an export ended, as recorded."""

    state: str  # complete, abandoned or failed
    load_id: str
    at: dt.datetime
    message: str | None = None
    transaction_time: dt.datetime | None = None
    output_files: int | None = None
    error_files: int | None = None
    error_lines: int | None = None
    error_paths: tuple[str, ...] = ()


def finish_job(con: duckdb.DuckDBPyConnection, job: BulkJob, outcome: JobOutcome) -> None:
    """Move the job out of state polling; the row stays as history."""
    con.execute(
        "UPDATE ops.bulk_jobs SET state = ?, finished_load_id = ?, finished_at = ?, message = ?, "
        "transaction_time = ?, output_files = ?, error_files = ?, error_lines = ?, "
        "error_paths = ? WHERE site_id = ? AND kicked_off_at = ?",
        [
            outcome.state,
            outcome.load_id,
            outcome.at,
            outcome.message,
            outcome.transaction_time,
            outcome.output_files,
            outcome.error_files,
            outcome.error_lines,
            "\n".join(outcome.error_paths) or None,
            job.site_id,
            job.kicked_off_at,
        ],
    )
