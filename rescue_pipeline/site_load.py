"""The pipeline's steps as the CLI and the Dagster assets both call them: load one site (its
source → the raw layer of the working database), validate, rebuild the core layer.

A step behaves the same from either caller.
It records each load in ops.runs (running → succeeded / failed with the reason) and turns
DuckDB's file lock into a clear "another load holds the warehouse" error.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from rescue_pipeline import inputs
from rescue_pipeline.analysis.build import AnalysisResult, derive_analysis
from rescue_pipeline.config import BulkSource, Config, FhirSource, NdjsonSource, SiteConfig
from rescue_pipeline.core.build import CoreBuildResult, build_core
from rescue_pipeline.core.pseudonym import pseudonym_key
from rescue_pipeline.extract.fetched import Fetched
from rescue_pipeline.extract.ndjson import SourceError, SourceFile, discover, discover_deletions
from rescue_pipeline.quality.gate import (
    PublishRefused,
    QualityResult,
    held_sites,
    refusal,
    run_quality,
)
from rescue_pipeline.quality.suites import worker as quality_worker
from rescue_pipeline.raw import ahead
from rescue_pipeline.raw.landing import LoadResult, new_load_id
from rescue_pipeline.raw.site_landing import land_fetched
from rescue_pipeline.raw.validation import ValidationResult, validate_pending
from rescue_pipeline.raw.workers import shutdown_pools
from rescue_pipeline.stopping import StopRequested
from rescue_pipeline.warehouse.database import memory_beside, open_work_db
from rescue_pipeline.warehouse.lock import WarehouseBusy, holder
from rescue_pipeline.warehouse.no_space import no_space
from rescue_pipeline.warehouse.publish import PublishResult, publish

log = logging.getLogger(__name__)


class SiteLoadError(RuntimeError):
    """A site's load failed; the message names the site and the reason. Other sites go on."""


@contextmanager
def work_db(config: Config, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    try:
        con = open_work_db(config.work_db, read_only=read_only, limits=config.duckdb)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            who = holder(config.work_db) or "another process (a load is running)"
            raise WarehouseBusy(
                f"{config.work_db} is held by {who}; try again when it finishes"
            ) from None
        raise
    try:
        yield con
    finally:
        con.close()


def close_interrupted_loads(config: Config) -> int:
    """Mark loads left 'running' by a process that died (SIGKILL, power loss) as interrupted.

    Called by a writer holding the writer lock, so no load of ours is running. A site's landing
    commits in one transaction with its watermarks: killed before that commit, nothing of the
    load is in raw and the next run fetches it again; killed after it (raw.loads has the load),
    what it landed stays and only its record was left open. The message says which.
    """
    with work_db(config) as con:
        rows = con.execute(
            "UPDATE ops.runs r SET status = 'interrupted', finished_at = ?, message = CASE "
            "WHEN EXISTS (SELECT 1 FROM raw.loads l WHERE l.load_id = r.load_id) THEN "
            "'the process ended after the landing committed; what it landed is kept' "
            "ELSE 'the process ended before the landing committed; nothing of it was kept, "
            "the next load fetches it again' END "
            "WHERE status = 'running' RETURNING load_id",
            [dt.datetime.now(dt.UTC)],
        ).fetchall()
    return len(rows)


def _landed(con: duckdb.DuckDBPyConnection, load_id: str) -> bool:
    """Whether the load's landing committed (its counts are in raw.loads)."""
    return bool(
        con.execute("SELECT count(*) FROM raw.loads WHERE load_id = ?", [load_id]).fetchall()[0][0]
    )


def _finish_if_possible(con: duckdb.DuckDBPyConnection, load_id: str, message: str) -> None:
    """Record a failed load on a full disk: the rollback usually freed room for the row; if
    not, the row stays 'running' and the next run or `rescue status` reports the load killed."""
    try:
        _finish(con, load_id, "failed", message=message)
    except duckdb.Error:
        log.warning("could not record the failed load %s: the disk is still full", load_id)


def load_site(
    config: Config,
    site: SiteConfig,
    *,
    full: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Extract and land one site. `full` re-reads files already landed (nothing is duplicated)."""
    try:
        return _load_site(config, site, full=full, progress=progress)
    except duckdb.Error as exc:  # opening the database or writing the record needs room too
        disk_full = no_space(exc)
        if not disk_full:
            raise
        raise SiteLoadError(
            f"site {site.id}: {disk_full}; the load's record could not be written "
            "(`rescue status` shows what landed)"
        ) from None


def _load_site(
    config: Config,
    site: SiteConfig,
    *,
    full: bool,
    progress: Callable[[int], None] | None,
) -> LoadResult:
    load_id = new_load_id(site.id)
    with work_db(config) as con:
        started = dt.datetime.now(dt.UTC)
        con.execute(
            "INSERT INTO ops.runs VALUES (?, ?, ?, ?, NULL, 'running', NULL, NULL, NULL, ?)",
            [load_id, site.id, site.source.kind, started, full],
        )
        try:
            result = fetch_and_land(
                con, site, load_id, work_dir=config.work_db.parent, full=full, progress=progress
            )
        except (SourceError, SiteLoadError, OSError) as exc:
            disk_full = no_space(exc)
            if disk_full:
                message = (
                    f"site {site.id}: {disk_full}; the load was rolled back, the next load "
                    "fetches it again"
                )
            elif isinstance(exc, SourceError | SiteLoadError):
                message = str(exc)
            else:
                message = f"site {site.id}: {exc}"
            _finish(con, load_id, "failed", message=message)
            log.error(
                message, extra={"event": "load_failed", "site_id": site.id, "load_id": load_id}
            )
            raise SiteLoadError(message) from None
        except BaseException as exc:
            disk_full = no_space(exc)
            if disk_full:  # say which folder to free; nothing of the load was kept
                message = (
                    f"site {site.id}: {disk_full}; the load was rolled back, the next load "
                    "fetches it again"
                )
                _finish_if_possible(con, load_id, message)
                log.error(
                    message, extra={"event": "load_failed", "site_id": site.id, "load_id": load_id}
                )
                raise SiteLoadError(message) from None
            if isinstance(exc, Exception | SystemExit | GeneratorExit):
                _finish(con, load_id, "failed", message=f"site {site.id}: {type(exc).__name__}")
            else:  # an interrupt (SIGTERM, SIGINT, an orchestrator's stop): not a failure
                landed = _landed(con, load_id)  # the signal may come after the commit
                what = (
                    "its landing had committed and is kept"
                    if landed
                    else "its landing was rolled back, the next load fetches it again"
                )
                _finish(
                    con,
                    load_id,
                    "stopped",
                    message=f"site {site.id}: stopped before the load finished; {what}",
                )
                if isinstance(exc, StopRequested):  # our own stop, outside Dagster: say where
                    kept = "kept" if landed else "rolled back"
                    raise StopRequested(
                        f"{exc} while site {site.id} was landing: its landing was {kept} "
                        "(ops.runs: stopped)"
                    ) from None
            raise
        _finish(con, load_id, "succeeded", result=result)
        total = result.total()
        log.info(
            "site %s: load %s landed",
            site.id,
            load_id,
            extra={
                "event": "load_succeeded", "site_id": site.id, "load_id": load_id,
                "source_kind": site.source.kind, "files_read": result.files_read,
                "files_unchanged": result.files_unchanged,
                "received": total.received, "accepted": total.accepted,
                "quarantined": total.quarantined, "new_versions": total.new_versions,
                "deletions": result.deletions.total().recorded if result.deletions else 0,
                "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 3),
            },
        )  # fmt: skip
        return result


def fetch_and_land(
    con: duckdb.DuckDBPyConnection,
    site: SiteConfig,
    load_id: str,
    *,
    work_dir: Path,
    full: bool = False,
    progress: Callable[[int], None] | None = None,
    client: Any = None,
    **clocks: Any,
) -> LoadResult:
    """Extract fetches (every source kind the same way), then the raw layer lands. Without the
    load's record in ops.runs (load_site adds it): tests and benchmarks call this directly,
    with their own `client` and, for Bulk, `clocks` (sleep and now)."""
    with fetch_site(
        con, site, load_id, work_dir=work_dir, full=full, client=client, **clocks
    ) as fetched:
        return land_fetched(con, site.id, fetched, load_id=load_id, reread=full, progress=progress)


@contextmanager
def fetch_site(
    con: duckdb.DuckDBPyConnection,
    site: SiteConfig,
    load_id: str,
    *,
    work_dir: Path,
    full: bool,
    client: Any = None,
    **clocks: Any,
) -> Iterator[Fetched]:
    """What the site's source kind fetches, staged until the landing is done."""
    source = site.source
    if isinstance(source, FhirSource):
        from rescue_pipeline.extract.rest import fetch_fhir_site  # httpx only for live sites

        with fetch_fhir_site(
            con, site, load_id, work_dir=work_dir, full=full, client=client
        ) as fetched:
            yield fetched
    elif isinstance(source, BulkSource):
        from rescue_pipeline.extract.bulk import fetch_bulk_site

        with fetch_bulk_site(
            con, site, load_id, work_dir=work_dir, full=full, client=client, **clocks
        ) as fetched:
            yield fetched
    elif isinstance(source, NdjsonSource):
        yield Fetched(discover(source.path, site.id), discover_deletions(source.path, site.id))
    else:
        raise SiteLoadError(f"site {site.id}: source kind {source.kind!r} is not known")


def expect_sites(config: Config, site_ids: Sequence[str], *, full: bool = False) -> None:
    """The sites that load in this process, in this order: the new files of those read from a
    folder are hashed and classified while the site before them finishes (raw.ahead). Other
    sources fetch when they load, and a folder that cannot be listed is left to its own load
    to report: nothing is begun for them."""
    for site_id in site_ids:
        site = config.site(site_id)
        files: list[SourceFile] = []
        if isinstance(site.source, NdjsonSource):
            try:
                files = discover(site.source.path, site.id)
            except (SourceError, OSError):
                files = []
        ahead.expect(site.id, files, reread=full)


def landing_over() -> None:
    """The sites have landed (or a stop came): what was classified ahead and not taken, and
    the landing's worker processes with what they hold, go now."""
    try:
        shutdown_pools()  # what they have not begun is cancelled: the drop does not wait for it
    finally:
        ahead.discard()


def _finish(
    con: duckdb.DuckDBPyConnection,
    load_id: str,
    status: str,
    *,
    result: LoadResult | None = None,
    message: str | None = None,
) -> None:
    con.execute(
        "UPDATE ops.runs SET finished_at = ?, status = ?, files_read = ?, files_unchanged = ?, "
        "message = ? WHERE load_id = ?",
        [
            dt.datetime.now(dt.UTC),
            status,
            result.files_read if result else None,
            result.files_unchanged if result else None,
            message,
            load_id,
        ],
    )


def validate_site(
    config: Config, site_id: str | None = None, progress: Callable[[int], None] | None = None
) -> ValidationResult:
    """Full FHIR validation of the versions not validated yet (all sites, or `site_id`'s),
    off the publish's path. The validation workers (the FHIR models, a few batches each) work
    beside DuckDB: it leaves them their share of its memory limit, the last checkpoint
    included (closing the connection would checkpoint at the whole limit, workers still up)."""
    with work_db(config) as con, memory_beside(con, config.duckdb):
        result = validate_pending(con, site_id=site_id, progress=progress)
        try:
            con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            full = no_space(exc)
            if full is None:
                raise
            # every batch committed (in the write-ahead log): the next open checkpoints it
            log.warning("validation: the checkpoint waits for disk space: %s", full)
        return result


def build_core_layer(
    config: Config, *, progress: Callable[[str], None] | None = None
) -> CoreBuildResult:
    """Rebuild the core tables from the raw layer (all sites), unless everything the
    derivation reads is as it was at the last publish (and the published file and report are
    there): then nothing after the landing has anything to do (`unchanged`)."""
    key = pseudonym_key()
    cutoff = config.analysis.data_cutoff or dt.date.today()
    with work_db(config) as con:
        now = inputs.fingerprint(con, config, key=key, cutoff=cutoff)
        published = config.warehouse.exists() and config.report_index.exists()
        if published and now == inputs.last_published(con):
            log.info(
                "nothing new since the last publish: core, analysis, quality, publish and "
                "report are not run again",
                extra={"event": "unchanged"},
            )
            return CoreBuildResult(unchanged=True)
        result = build_core(con, config, key=key, today=cutoff, progress=progress)
        inputs.record_built(con, now)
        return result


def derive_analysis_layer(config: Config, *, start_quality_worker: bool = False) -> AnalysisResult:
    """Derive eligibility, ADSL and ADTTE from the core tables. `start_quality_worker` when the
    quality step runs next in this process (`rescue run`): the worker imports Great
    Expectations meanwhile, on the processor the derivation's Python leaves over."""
    if start_quality_worker:
        quality_worker.start()
    with work_db(config) as con:
        return derive_analysis(con, config)


def check_quality(config: Config) -> QualityResult:
    """Run every expectation suite; results go to quality.results. The quality worker ends
    with the step: the publish, report and validation get its memory back."""
    try:
        with work_db(config) as con:
            result = run_quality(con, config, stop_worker=True)
    finally:
        quality_worker.stop()
    log.info(
        "quality run %s: %d checks, %d critical failures, %d warnings",
        result.run_id, len(result.checks), len(result.critical_failures), len(result.warnings),
        extra={"event": "quality_checked", "quality_run": result.run_id},
    )  # fmt: skip
    return result


def publish_warehouse(config: Config, quality: QualityResult | None = None) -> PublishResult:
    """Copy core, analysis and quality into the next published warehouse and rename it into
    place. A critical check of `quality` that failed for a site holds that site back (its last
    published data stay; `PublishResult.held` says why, exit code 3); one that is not
    site-specific refuses the publish (PublishRefused, exit code 3)."""
    if quality is not None and (reason := refusal(quality)):
        raise PublishRefused(reason)
    held = held_sites(quality) if quality is not None else {}
    with work_db(config) as con:
        result = publish(con, config.warehouse, held=held, sites=[s.id for s in config.sites])
        inputs.record_published(con, result.published_at or dt.datetime.now(dt.UTC))
    for site_id, reason in held.items():
        log.warning(
            "site %s held back, its last published data kept: %s", site_id, reason,
            extra={"event": "site_held", "site_id": site_id},
        )  # fmt: skip
    log.info(
        "published %s in %.1f s", result.path, result.seconds,
        extra={"event": "published", "tables": len(result.rows), "held": sorted(held)},
    )  # fmt: skip
    return result
