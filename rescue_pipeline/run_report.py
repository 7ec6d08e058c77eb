"""The typed report of one pipeline run: what each site's load, the core build, the checks, the
publish and the validation did, and the exit code that follows from it.

Every step of a Dagster run records its part (ops.run_reports) as it ends, failed or not; the
command line, `rescue status` and the Dagster metadata read the report back and only display it.
A command that starts several Dagster runs (one per site, then the replay and the validation)
tags them with one report id, so `rescue run` has one report; a run the daemon starts is its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_type_hints

if TYPE_CHECKING:
    import duckdb

EXIT_OK, EXIT_FAILED, EXIT_QUALITY = 0, 1, 3


@dataclass(frozen=True)
class LoadPart:
    """One site's landing."""

    site_id: str
    ok: bool
    full: bool = False
    load_id: str | None = None
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    new_versions: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    seconds: float = 0.0
    error: str | None = None  # one line: site and reason, never a value or a secret


@dataclass(frozen=True)
class CorePart:
    ok: bool
    unchanged: bool = False  # nothing new since the last publish: nothing after it ran
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class AnalysisPart:
    ok: bool
    eligible: int = 0
    not_eligible: int = 0
    eligibility_unknown: int = 0
    pfs_events: int = 0
    pfs_censored: int = 0
    error: str | None = None


@dataclass(frozen=True)
class QualityPart:
    ok: bool
    run_id: str | None = None
    suites_sha256: str | None = None
    checks: int = 0
    critical_failures: tuple[str, ...] = ()  # "check_id at site" of each failed critical check
    warnings: int = 0
    error: str | None = None


@dataclass(frozen=True)
class PublicationPart:
    ok: bool
    published_at: dt.datetime | None = None
    published: tuple[str, ...] = ()  # sites whose data of this run were published
    held: dict[str, str] = field(default_factory=dict)  # site → the critical checks it failed
    # site → since when its kept data were published (UTC ISO 8601; None: never published)
    held_since: dict[str, str | None] = field(default_factory=dict)
    refused: str | None = None  # why the whole publish was refused (a study-wide critical check)
    error: str | None = None


@dataclass(frozen=True)
class ReportPart:
    """The sponsors' report and the sites' data queries."""

    ok: bool
    pages: int = 0
    error: str | None = None


@dataclass(frozen=True)
class ErrorPart:
    """A failure no step recorded, as the runner saw it (the step's process died, the working
    database was not writable, a part went missing)."""

    error: str


@dataclass(frozen=True)
class ValidationPart:
    ok: bool
    validated: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


PARTS: dict[str, type] = {
    "load": LoadPart,
    "core": CorePart,
    "analysis": AnalysisPart,
    "quality": QualityPart,
    "publication": PublicationPart,
    "sponsors_report": ReportPart,
    "validation": ValidationPart,
    "error": ErrorPart,
}


@dataclass
class RunReport:
    report_id: str
    loads: list[LoadPart] = field(default_factory=list)
    core: CorePart | None = None
    analysis: AnalysisPart | None = None
    quality: QualityPart | None = None
    publication: PublicationPart | None = None
    sponsors_report: ReportPart | None = None
    validation: ValidationPart | None = None
    # Failures no step could record (the working database was not writable, the step process
    # died, a part went missing): the runner's reading, one line each.
    errors: list[str] = field(default_factory=list)

    @property
    def failed_loads(self) -> list[LoadPart]:
        return [load for load in self.loads if not load.ok]

    @property
    def held_or_refused(self) -> bool:
        p = self.publication
        return p is not None and (bool(p.held) or p.refused is not None)

    @property
    def exit_code(self) -> int:
        """3 when a critical check held a site back or refused the publish; 1 when any part
        failed; else 0 (the command line's contract)."""
        if self.held_or_refused:
            return EXIT_QUALITY
        parts = [
            self.core, self.analysis, self.quality, self.publication, self.sponsors_report,
            self.validation,
        ]  # fmt: skip
        if self.failed_loads or self.errors or any(p is not None and not p.ok for p in parts):
            return EXIT_FAILED
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {**_plain(dataclasses.asdict(self)), "exit_code": self.exit_code}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _from_body(kind: type, body: dict[str, Any]) -> Any:
    """A part from its JSON: known fields only (a report written by an older version reads)."""
    hints = get_type_hints(kind)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if f.name not in body:
            continue
        value = body[f.name]
        if "datetime" in str(hints[f.name]) and isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        elif "tuple" in str(hints[f.name]) and isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return kind(**values)


def record(
    con: duckdb.DuckDBPyConnection,
    *,
    report_id: str,
    dagster_run_id: str,
    job: str | None,
    part: Any,
) -> None:
    """Add a step's part to its run's report."""
    kind = next(name for name, cls in PARTS.items() if isinstance(part, cls))
    con.execute(
        "INSERT INTO ops.run_reports VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            report_id,
            dagster_run_id,
            job,
            kind,
            getattr(part, "site_id", None),
            dt.datetime.now(dt.UTC),
            json.dumps(_plain(dataclasses.asdict(part))),
        ],
    )


def read(con: duckdb.DuckDBPyConnection, report_id: str) -> RunReport:
    """The report of `report_id` from its recorded parts (a part recorded twice, as by a retried
    step, counts once: the later one; loads by site, in the order they ran)."""
    report = RunReport(report_id)
    rows = con.execute(
        "SELECT part, site_id, body FROM ops.run_reports WHERE report_id = ? ORDER BY recorded_at",
        [report_id],
    ).fetchall()
    loads: dict[str, LoadPart] = {}
    for kind, site_id, body in rows:
        cls = PARTS.get(kind)
        if cls is None:
            continue
        part = _from_body(cls, json.loads(body) if isinstance(body, str) else body)
        if kind == "load":
            loads.pop(site_id, None)
            loads[site_id] = part
        elif kind == "error":
            if part.error not in report.errors:
                report.errors.append(part.error)
        else:
            setattr(report, kind, part)
    report.loads = list(loads.values())
    return report


def latest_report_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The report id of the latest run that loaded, derived or published (None before the first
    run, or in a working database older than the run reports)."""
    from rescue_pipeline.warehouse.database import has_table  # the CLI imports this module

    if not has_table(con, "ops", "run_reports"):
        return None
    # A validation on its own (the daemon's job after a replay) is not a run to report on.
    rows = con.execute(
        "SELECT report_id FROM ops.run_reports GROUP BY report_id "
        "HAVING bool_or(part NOT IN ('validation', 'error')) "
        "ORDER BY max(recorded_at) DESC LIMIT 1"
    ).fetchall()
    return str(rows[0][0]) if rows else None


def summary(report: RunReport) -> str:
    """The report in one line, for `rescue status`."""
    loads = ", ".join(f"{p.site_id} {'ok' if p.ok else 'FAILED'}" for p in report.loads)
    parts = [f"exit code {report.exit_code}", f"loads: {loads or 'none'}"]
    if report.core is not None and report.core.unchanged:
        parts.append("nothing new, nothing rebuilt")
    publication = report.publication
    if publication is not None and publication.refused:
        parts.append("publish refused")
    elif publication is not None:
        parts.append(f"published: {', '.join(publication.published) or 'no site'}")
        if publication.held:
            parts.append(f"held: {', '.join(sorted(publication.held))}")
    return "; ".join(parts)


def report_shape() -> dict[str, Any]:
    """The report's shape (field names and types, per part): a test keeps it from changing
    unnoticed, since monitoring reads the JSON."""

    def name(hint: Any) -> str:
        text = hint.__name__ if isinstance(hint, type) else str(hint)
        return text.replace("rescue_pipeline.run_report.", "").replace(
            "datetime.datetime", "datetime"
        )

    def shape(cls: type) -> dict[str, str]:
        hints = get_type_hints(cls)
        return {f.name: name(hints[f.name]) for f in dataclasses.fields(cls)}

    return {
        "report": shape(RunReport),
        "parts": {name: shape(cls) for name, cls in PARTS.items()},
        "exit_codes": {"ok": EXIT_OK, "failed": EXIT_FAILED, "quality": EXIT_QUALITY},
    }
