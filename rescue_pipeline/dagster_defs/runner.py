"""Run the pipeline's named jobs in this process: `site_load` (or `site_full_reload`) per site,
then `replay` (core, analysis, checks, publish, report), then `validate`.

`rescue run` and `rescue demo` use this, so the command line runs the very jobs the schedules,
sensors and the Dagster UI run, and they appear in the instance's history under their names.
The runs share one report id (tag rescue/run): their steps record the parts of one run report,
which this returns. A failed site is reported and the others go on.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from rescue_pipeline import run_report
from rescue_pipeline.config import Config, Environment
from rescue_pipeline.dagster_defs.automation import FULL_JOB, REPLAY_JOB, SITE_JOB, VALIDATE_JOB
from rescue_pipeline.dagster_defs.definitions import build_definitions
from rescue_pipeline.dagster_defs.failures import failure_reason
from rescue_pipeline.dagster_defs.keys import (
    FULL_TAG,
    LOAD_OP,
    PUBLISHED,
    REPORT,
    REPORT_TAG,
    SITE_TAG,
    TRIGGER_TAG,
)
from rescue_pipeline.extract.http import scrub
from rescue_pipeline.quality.latest import latest_publication
from rescue_pipeline.quality.suites import worker as quality_worker
from rescue_pipeline.report import drawing
from rescue_pipeline.run_report import (
    ErrorPart,
    LoadPart,
    PublicationPart,
    RunReport,
    ValidationPart,
)
from rescue_pipeline.site_load import expect_sites, landing_over, work_db
from rescue_pipeline.stopping import StopRequested, stop_requested, stop_signal
from rescue_pipeline.warehouse.no_space import no_space

# The command line prints its own one-line errors; Dagster's console logger would add tracebacks.
_QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

# A stage begins (its label) and ends (whether it went well, and a note to show).
Begin = Callable[[str], None]
End = Callable[[bool, str], None]


def instance_for(home: Path | None) -> dg.DagsterInstance:
    """The instance at `home` (or DAGSTER_HOME); an ephemeral one when neither is given."""
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        yaml = home / "dagster.yaml"
        if not yaml.exists():
            yaml.write_text("telemetry:\n  enabled: false\n")
        return dg.DagsterInstance.from_config(str(home))
    if Environment.current().dagster_home:
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def run_pipeline(
    config: Config,
    site_ids: list[str],
    *,
    full: bool = False,
    instance: dg.DagsterInstance,
    begin: Begin | None = None,
    end: End | None = None,
) -> RunReport:
    """Load each of `site_ids` (every file re-read when `full`), then derive, check, publish,
    report and validate; the run report of it all. A stop signal raises StopRequested with
    what stands."""
    # a failed site is reported at once; the asset checks wait for the publish and the report
    defs = build_definitions(config, retries=False, checks_last=True)
    report_id = uuid.uuid4().hex
    tags = {REPORT_TAG: report_id, TRIGGER_TAG: "cli"}
    began = dt.datetime.now(dt.UTC)
    runs = _Runs(config)

    load = defs.resolve_job_def(FULL_JOB if full else SITE_JOB)
    load_config: dict[str, Any] = dict(_QUIET)
    load_tags = dict(tags)
    if full:
        load_config["ops"] = {LOAD_OP: {"config": {"full": True}}}
        load_tags[FULL_TAG] = "true"
    try:
        expect_sites(config, site_ids, full=full)  # each next one's files while one commits
        for site_id in site_ids:
            _begin(begin, f"landing {site_id}" + (" (full reload)" if full else ""))
            result = load.execute_in_process(
                partition_key=site_id,
                instance=instance,
                run_config=load_config,
                tags={**load_tags, SITE_TAG: site_id},
                raise_on_error=False,
            )
            if not result.success and _stopped(result):
                _end(end, False, "stopped")
                raise StopRequested(_stopped_at(config, site_id, began))
            runs.ended(f"load:{site_id}", result)
            _end(end, result.success, runs.note(f"load:{site_id}"))
    finally:
        landing_over()

    _begin(begin, "core, analysis, quality, publish, report")
    try:
        replay = defs.resolve_job_def(REPLAY_JOB).execute_in_process(
            instance=instance, run_config=_QUIET, tags=tags, raise_on_error=False
        )
    finally:
        quality_worker.stop()  # when a step failed before the quality step could end it
        drawing.stop()  # the report's drawing process, started with the publish
    if not replay.success and _stopped(replay):
        _end(end, False, "stopped")
        raise replay_stopped({e.asset_key for e in replay.get_asset_materialization_events()})
    runs.ended("replay", replay)
    report = runs.report(report_id, began)
    core = report.core
    unchanged = replay.success and core is not None and core.unchanged
    _end(end, replay.success, "(nothing new: not run again)" if unchanged else runs.note("replay"))

    # Nothing published depends on it, so the warehouse and the report come first.
    _begin(begin, "validating new versions (FHIR R4B)")
    validation = defs.resolve_job_def(VALIDATE_JOB).execute_in_process(
        instance=instance, run_config=_QUIET, tags=tags, raise_on_error=False
    )
    if not validation.success and _stopped(validation):
        _end(end, False, "stopped")
        publication, written = report.publication, report.sponsors_report
        raise StopRequested(
            f"stopped by {stop_signal()} while validating",
            published=publication is not None and publication.ok,
            report_written=written is not None and written.ok,
        )
    runs.ended("validate", validation)
    _end(end, validation.success, runs.note("validate"))
    return runs.report(report_id, began, store=True)


def replay_stopped(done: set[dg.AssetKey | None]) -> StopRequested:
    """What a stop signal during the replay leaves, from the assets it had materialized: the
    asset checks come after the publish and the report."""
    published, reported = PUBLISHED in done, REPORT in done
    if reported:
        where = "after the publish and the report, during the asset checks"
    elif published:
        where = "after the publish, while the report was written"
    else:
        where = "during core, analysis, quality or publish"
    return StopRequested(
        f"stopped by {stop_signal()} {where}", published=published, report_written=reported
    )


def _begin(begin: Begin | None, label: str) -> None:
    if begin:
        begin(label)


def _end(end: End | None, ok: bool, note: str) -> None:
    if end:
        end(ok, note)


class _Runs:
    """The Dagster runs of one command, and what each should have recorded: the report read
    back is completed with what no step could record, so nothing that failed goes unsaid."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.secrets = Environment.current().secret_values(config, shortest=4)
        self.outcomes: dict[str, str | None] = {}  # run key → None (succeeded) or its reason

    def ended(self, key: str, result: dg.ExecuteInProcessResult) -> None:
        self.outcomes[key] = None if result.success else scrub(_reason(result), self.secrets)

    def note(self, key: str) -> str:
        reason = self.outcomes.get(key)
        return "" if reason is None else f"FAILED: {reason}"

    def report(self, report_id: str, began: dt.datetime, *, store: bool = False) -> RunReport:
        """The recorded report, completed; `store` records what was added to it, so the
        report `rescue status` reads says what this one says."""
        try:
            # read-write, as the steps opened it: a failed step's connection may still be
            # open here, and DuckDB refuses a second one with other settings (we hold the
            # writer lock)
            with work_db(self.config) as con:
                report = run_report.read(con, report_id)
                added = self._complete(report, con, began)
                if store:
                    for error in added:
                        run_report.record(
                            con, report_id=report_id, dagster_run_id="", job=None,
                            part=ErrorPart(error),
                        )  # fmt: skip
        except duckdb.Error as exc:
            disk_full = no_space(exc)
            if not disk_full:
                raise
            report = RunReport(report_id, errors=[f"the run report was not read: {disk_full}"])
            self._complete(report, None, began)
        return report

    def _complete(
        self, report: RunReport, con: duckdb.DuckDBPyConnection | None, began: dt.datetime
    ) -> list[str]:
        """Add what the runs' outcomes say and no part does; the errors added."""
        added: list[str] = []

        def error(text: str) -> None:
            if text not in report.errors:
                report.errors.append(text)
                added.append(text)

        for key, reason in self.outcomes.items():
            kind, _, site_id = key.partition(":")
            if kind == "load":
                recorded = next((p for p in report.loads if p.site_id == site_id), None)
                if reason is not None and recorded is None:
                    report.loads.append(LoadPart(site_id, ok=False, error=reason))
                elif reason is not None and recorded is not None and recorded.ok:
                    # it landed; what failed after it, in the same run, is the reason
                    index = report.loads.index(recorded)
                    report.loads[index] = replace(recorded, ok=False, error=reason)
                elif reason is None and recorded is None:
                    error(f"site {site_id}: landed, but its part of the run report is missing")
            elif kind == "validate":
                if reason is not None and (report.validation is None or report.validation.ok):
                    report.validation = ValidationPart(ok=False, error=reason)
                elif reason is None and report.validation is None:
                    error("validation: done, but its part of the run report is missing")
            elif reason is not None:
                parts = (report.core, report.analysis, report.quality, report.publication,
                         report.sponsors_report)  # fmt: skip
                if not any(p is not None and not p.ok for p in parts):  # no step said why
                    error(reason)
            else:
                self._replay_parts(report, con, began, error)
        return added

    def _replay_parts(
        self,
        report: RunReport,
        con: duckdb.DuckDBPyConnection | None,
        began: dt.datetime,
        error: Callable[[str], None],
    ) -> None:
        """A replay that succeeded built core (or found nothing new) and, when it built,
        derived, checked, published and reported: each of those says so."""
        if report.core is None:
            error("core build: done, but its part of the run report is missing")
            return
        if report.core.unchanged:
            return
        for name in ("analysis", "quality", "publication", "sponsors_report"):
            if getattr(report, name) is None:
                error(f"{name.replace('_', ' ')}: done, but its part of the run report is missing")
        if report.publication is None and con is not None:  # who was held: as published
            latest = latest_publication(con)
            if latest is not None and latest.published_at >= began:
                report.publication = PublicationPart(
                    ok=True,
                    published_at=latest.published_at,
                    published=tuple(s.site_id for s in latest.sites if s.status == "published"),
                    held={s.site_id: s.reason or "" for s in latest.held},
                )


def _reason(result: dg.ExecuteInProcessResult) -> str:
    failures = result.get_step_failure_events()
    if failures:
        return failure_reason(failures[0])
    return "the run failed outside its steps (see the Dagster run's log)"


def _stopped_at(config: Config, site_id: str, began: dt.datetime) -> str:
    """What a stop during `site_id`'s landing left: nothing begun, a committed landing (kept)
    or a rolled back one."""
    with work_db(config) as con:  # as the interrupted step opened it
        loads = con.execute(  # this run's load of the site, if it began one
            "SELECT EXISTS (SELECT 1 FROM raw.loads l WHERE l.load_id = r.load_id) "
            "FROM ops.runs r WHERE r.site_id = ? AND r.started_at >= ? "
            "ORDER BY r.started_at DESC LIMIT 1",
            [site_id, began],
        ).fetchall()
    if not loads:
        landed = "it had not begun landing"
    elif loads[0][0]:
        landed = "its landing had committed and is kept"
    else:
        landed = "its landing was rolled back (ops.runs: stopped)"
    return (
        f"stopped by {stop_signal()} at site {site_id}: {landed}; "
        "the sites after it and the core build did not run"
    )


def _stopped(result: dg.ExecuteInProcessResult) -> bool:
    """Whether a failed run failed because a stop was asked for: our handler ran, or Dagster
    raised its interrupt (in a step, or between steps, when the run itself records it), or
    DuckDB turned either into "Query interrupted" (nothing in the pipeline interrupts a query
    otherwise)."""
    if stop_requested():
        return True
    for event in result.all_events:
        data = event.event_specific_data
        error = getattr(data, "error", None)
        while error is not None:
            if error.cls_name in _INTERRUPTS or (
                error.cls_name in ("RuntimeError", "InterruptException")
                and "Query interrupted" in error.message
            ):
                return True
            error = error.cause or error.context
    return False


_INTERRUPTS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt", "StopRequested")
