"""The Bulk Data source (`kind: bulk`, FHIR Bulk Data Access IG): kick off `$export`, poll its
status URL, stream every file of the manifest to disk, land them as an NDJSON folder is landed.

Why the job is stored before the first poll (ops.bulk_jobs): a real export runs for hours to
weeks, longer than one run of ours. The next run resumes polling the stored status URL; when the
server no longer knows it (404/410: sekmet, for one, keeps jobs in memory only) the job is
marked abandoned and a new export starts, and the log says so. Each run polls for at most
`run_wait_minutes`, then leaves the job for the next run; a job not complete `deadline_hours`
after its kick-off is abandoned (cancelled on the server) and the load fails with that reason.

Incremental: `_since` is the watermark in UTC `Z` (servers such as sekmet compare it as a
string); one kick-off serves every configured type, so it asks from the earliest of their marks
(a type without a mark makes it a full export). After the landing has committed, each type's
mark becomes the manifest's transactionTime, the instant up to which the server promises the
export is complete. The repeats this can bring (types whose own mark was later) are free: landing
deduplicates versions by content.

Deletions: the manifest's `deleted` files (Bundles of DELETE entries) are downloaded like the
output files (same origin and token rules, counts checked) into deleted/, and landed into
raw.deletions in the same load, before the marks move; a deletion without a timestamp of its own
is dated by the manifest's transactionTime.

The manifest's `error` files (OperationOutcomes about the export, not data) are downloaded
beside the data, counted, recorded on the job and logged as warnings. A status answer that is not
a manifest, a file the server cannot serve, a file cut short: the job is marked failed, the
site's load fails naming the site, the URL and the reason, and the watermarks stay.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urljoin, urlsplit

import duckdb
import orjson

from rescue_pipeline.config import BulkSource, SiteConfig
from rescue_pipeline.extract.bulk_jobs import (
    BulkJob,
    JobOutcome,
    finish_job,
    note_poll,
    polling_job,
    store_job,
)
from rescue_pipeline.extract.bulk_manifest import BulkError, Manifest, ManifestFile, parse_manifest
from rescue_pipeline.extract.fetched import Fetched
from rescue_pipeline.extract.http import Download, FhirHttpClient, HttpError, client_for
from rescue_pipeline.extract.ndjson import DELETED, DeletionFile, SourceError, SourceFile
from rescue_pipeline.extract.paths import file_in
from rescue_pipeline.extract.rest import DEFAULT_TYPES
from rescue_pipeline.extract.retry import retry_after_seconds
from rescue_pipeline.extract.staging import staging_folder
from rescue_pipeline.extract.watermarks import format_mark, read_marks

log = logging.getLogger(__name__)

_LOST = (404, 410)  # the server no longer knows the export
_OUTCOME_SAMPLE = 3  # error texts quoted in the log per error file


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _span(seconds: float) -> str:
    """A duration as people read it: 72 h, 45 min, 0.5 s."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def kickoff_url(source: BulkSource) -> str:
    base = source.base_url.rstrip("/")
    if source.level == "group":
        return f"{base}/Group/{quote(source.group_id or '', safe='')}/$export"
    if source.level == "patient":
        return f"{base}/Patient/$export"
    return f"{base}/$export"


def kickoff_params(
    types: tuple[str, ...], since: dt.datetime | None, search: dict[str, dict[str, str]]
) -> tuple[tuple[str, str], ...]:
    """_type, _since (UTC Z) and one _typeFilter per type with search parameters."""
    params = [("_type", ",".join(types))]
    if since is not None:
        params.append(("_since", format_mark(since)))
    for rtype in types:
        if search.get(rtype):
            params.append(("_typeFilter", f"{rtype}?{urlencode(search[rtype])}"))
    return tuple(params)


class _Export:
    """One site's export: resume or kick off, poll, and record each step in ops.bulk_jobs."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        client: FhirHttpClient,
        site_id: str,
        source: BulkSource,
        load_id: str,
        sleep: Callable[[float], None],
        now: Callable[[], dt.datetime],
    ) -> None:
        self.con = con
        self.client = client
        self.site_id = site_id
        self.source = source
        self.load_id = load_id
        self.sleep = sleep
        self.now = now

    def manifest(self, full: bool) -> tuple[BulkJob, Manifest]:
        """A completed export's manifest: the stored job's if it still lives, else a new one's."""
        job = polling_job(self.con, self.site_id)
        if job is not None and full and job.since is not None:
            self.give_up(job, "abandoned", "superseded by a full load (--full)", cancel=True)
            job = None
        if job is not None:
            log.info(
                "site %s: resuming the export kicked off at %s: %s",
                self.site_id,
                f"{job.kicked_off_at:%Y-%m-%d %H:%M:%S}Z",
                self.client.shown(job.status_url),
            )
            manifest, lost = self.poll(job)
            if manifest is not None:
                return job, manifest
            message = (
                f"the server no longer knows this export (HTTP {lost} at "
                f"{self.client.shown(job.status_url)}); a new export was started"
            )
            self.give_up(job, "abandoned", message, cancel=False)
            log.warning("site %s: %s", self.site_id, message)
        job = self.kickoff(full)
        manifest, lost = self.poll(job)
        if manifest is None:
            message = (
                f"site {self.site_id}: GET {self.client.shown(job.status_url)}: HTTP {lost} for "
                "an export just kicked off"
            )
            self.give_up(job, "failed", message, cancel=False)
            raise BulkError(message)
        return job, manifest

    def kickoff(self, full: bool) -> BulkJob:
        source = self.source
        types = source.types or DEFAULT_TYPES
        marks = {} if full else read_marks(self.con, self.site_id)
        missing = [t for t in types if t not in marks]
        since = None if missing else min(marks[t] for t in types)
        if missing and marks:
            log.info(
                "site %s: no watermark yet for %s: the export asks for everything",
                self.site_id,
                ", ".join(missing),
            )
        url = kickoff_url(source)
        params = kickoff_params(tuple(types), since, source.search)
        kicked_off_at = self.now()
        response = self.client.get(url, params, headers={"Prefer": "respond-async"})
        shown = self.client.shown(response.request.url)
        where = f"site {self.site_id}: GET {shown}"
        if response.status_code != 202:
            raise BulkError(
                f"{where}: kick-off answered HTTP {response.status_code}, expected 202 Accepted "
                "(an asynchronous export)"
            )
        location = response.headers.get("Content-Location")
        if not location:
            raise BulkError(f"{where}: kick-off answered 202 without a Content-Location")
        status_url = urljoin(str(response.request.url), location)
        self.same_origin(status_url, where, "status URL")
        job = BulkJob(
            site_id=self.site_id,
            kicked_off_at=kicked_off_at,
            status_url=status_url,
            kickoff_url=shown,
            level=source.level,
            types=tuple(types),
            since=since,
            load_id=self.load_id,
        )
        store_job(self.con, job)  # committed before the first poll: a restart resumes it
        log.info(
            "site %s: export kicked off (%s); polling %s",
            self.site_id,
            "since " + format_mark(since) if since else "everything",
            self.client.shown(status_url),
        )
        return job

    def poll(self, job: BulkJob) -> tuple[Manifest | None, int | None]:
        """Poll until the manifest: (manifest, None), or (None, status) when the server lost it.

        Waits what Retry-After asks (or poll_seconds, doubling), capped at max_wait_seconds and
        at the deadline; raises BulkError past the deadline or this run's waiting time.
        """
        source = self.source
        deadline = job.kicked_off_at + dt.timedelta(hours=source.deadline_hours)
        run_until = self.now() + dt.timedelta(minutes=source.run_wait_minutes)
        default_wait = source.poll_seconds
        shown = self.client.shown(job.status_url)
        while True:
            try:
                response = self.client.get(job.status_url)
            except HttpError as exc:
                if exc.status in _LOST:
                    return None, exc.status
                raise
            polled = self.now()
            if response.status_code != 202:
                return self.read_manifest(job, response.status_code, response.content), None
            progress = response.headers.get("X-Progress") or None
            note_poll(self.con, job, progress, polled)
            if polled >= deadline:
                message = (
                    f"site {self.site_id}: export kicked off at "
                    f"{job.kicked_off_at:%Y-%m-%d %H:%M:%S}Z is still in progress "
                    f"({progress or 'no X-Progress'}) past its deadline of "
                    f"{_span(source.deadline_hours * 3600)} ({shown}); abandoned, the next run "
                    "starts a new export"
                )
                self.give_up(job, "abandoned", message, cancel=True)
                raise BulkError(message)
            asked = retry_after_seconds(response.headers.get("Retry-After"), polled)
            if asked is None:
                wait, default_wait = default_wait, min(default_wait * 2, source.max_wait_seconds)
            else:
                wait = asked
            if wait > source.max_wait_seconds:
                log.info(
                    "site %s: Retry-After %.0f s capped at max_wait_seconds %d",
                    self.site_id,
                    wait,
                    source.max_wait_seconds,
                )
                wait = float(source.max_wait_seconds)
            wait = min(wait, max(0.0, (deadline - polled).total_seconds()))
            if polled + dt.timedelta(seconds=wait) > run_until:
                raise BulkError(
                    f"site {self.site_id}: export kicked off at "
                    f"{job.kicked_off_at:%Y-%m-%d %H:%M:%S}Z still in progress "
                    f"({progress or 'no X-Progress'}) after this run's "
                    f"{_span(source.run_wait_minutes * 60)} of waiting ({shown}); it stays stored "
                    "and the next run resumes polling it"
                )
            log.info(
                "site %s: export in progress (X-Progress: %s); next poll in %.1f s",
                self.site_id,
                progress or "-",
                wait,
            )
            self.sleep(wait)

    def read_manifest(self, job: BulkJob, status: int, body: bytes) -> Manifest:
        """The manifest of a completed export; anything else fails the job for good."""
        shown = self.client.shown(job.status_url)
        try:
            if status != 200:
                raise BulkError(
                    f"site {self.site_id}: GET {shown}: status answered HTTP {status}, expected "
                    "202 (in progress) or 200 (the manifest)"
                )
            return parse_manifest(self.site_id, shown, body)
        except BulkError as exc:
            self.give_up(job, "failed", str(exc), cancel=True)
            raise

    def same_origin(self, url: str, where: str, what: str) -> None:
        """Our token goes only to the server we were configured for."""
        if _origin(url) != _origin(self.source.base_url) and self.source.auth.kind != "none":
            raise BulkError(
                f"{where}: {what} {self.client.shown(url)} is on another server than base_url; "
                "our token is not sent there"
            )

    def give_up(self, job: BulkJob, state: str, message: str, *, cancel: bool) -> None:
        finish_job(self.con, job, JobOutcome(state, self.load_id, self.now(), message=message))
        if cancel:
            self.forget(job)

    def forget(self, job: BulkJob) -> None:
        """DELETE the status URL (a courtesy: the server may free the files); never fails."""
        if not self.source.delete_when_done:
            return
        try:
            self.client.delete(job.status_url)
        except SourceError as exc:
            log.warning("%s (the server keeps the export until it expires)", exc)


@dataclass
class _Errors:
    files: int = 0
    lines: int = 0
    paths: tuple[str, ...] = ()


def download_deleted(export: _Export, manifest: Manifest, folder: Path) -> list[DeletionFile]:
    """Every deletion file streamed to folder/deleted, checked against the manifest's count."""
    files: list[DeletionFile] = []
    for n, entry in enumerate(manifest.deleted, 1):
        dest = file_in(folder / DELETED, f"{n:04d}-{entry.type}.ndjson")
        got = _fetch(export, manifest, entry, dest)
        files.append(
            DeletionFile(
                dest,
                export.client.shown(entry.url),
                got.sha256,
                default_time=manifest.transaction_time,
                default_basis="export",
            )
        )
    return files


def download_files(
    export: _Export, manifest: Manifest, folder: Path
) -> tuple[list[SourceFile], _Errors]:
    """Every output file streamed to folder, checked against the manifest's count; the error
    files into folder/errors, counted and logged."""
    client, site_id = export.client, export.site_id
    files: list[SourceFile] = []
    for n, entry in enumerate(manifest.output, 1):
        dest = file_in(folder, f"{n:04d}-{entry.type}.ndjson")
        _fetch(export, manifest, entry, dest)  # checked against the manifest's count
        # the landing hashes the bytes it lands as it plans them: no hash handed over here
        files.append(SourceFile(entry.type, dest, client.shown(entry.url)))
    errors = _Errors()
    for n, entry in enumerate(manifest.error, 1):
        dest = file_in(folder / "errors", f"{n:04d}-{entry.type}.ndjson")
        lines = _fetch(export, manifest, entry, dest).lines
        errors.files += 1
        errors.lines += lines
        errors.paths += (str(dest),)
        log.warning(
            "site %s: the export reports %d issue(s) in %s (kept at %s): %s",
            site_id,
            lines,
            client.shown(entry.url),
            dest,
            "; ".join(_outcome_texts(dest)) or "no text",
        )
    return files, errors


def _fetch(export: _Export, manifest: Manifest, entry: ManifestFile, dest: Path) -> Download:
    client = export.client
    where = f"site {export.site_id}: GET {client.shown(entry.url)}"
    if manifest.requires_token:
        export.same_origin(entry.url, where, "file")
    got = client.download(
        entry.url,
        dest,
        send_auth=manifest.requires_token,
        max_bytes=export.source.max_file_bytes,
        max_seconds=export.source.max_file_seconds,
    )
    if entry.count is not None and got.lines != entry.count:
        what = "file cut short" if got.lines < entry.count else "file longer than announced"
        raise BulkError(
            f"{where}: {what}: {got.lines} lines received, the manifest says {entry.count}"
        )
    return got


def _outcome_texts(path: Path) -> list[str]:
    """The first few issue texts of an error file (read a line at a time)."""
    texts: list[str] = []
    with path.open("rb") as f:
        for line in f:
            try:
                outcome = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            for issue in outcome.get("issue") or () if isinstance(outcome, dict) else ():
                if not isinstance(issue, dict):
                    continue
                details = issue.get("details")
                text = issue.get("diagnostics") or (
                    details.get("text") if isinstance(details, dict) else None
                )
                if isinstance(text, str) and text:
                    texts.append(text[:200])
                if len(texts) >= _OUTCOME_SAMPLE:
                    return texts
    return texts


@contextmanager
def fetch_bulk_site(
    con: duckdb.DuckDBPyConnection,
    site: SiteConfig,
    load_id: str,
    *,
    work_dir: Path,
    full: bool = False,
    client: FhirHttpClient | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = _utcnow,
) -> Iterator[Fetched]:
    """Export a kind: bulk site into <work_dir>/extract/<site>/<load_id>/, proposing watermarks
    at the manifest's transactionTime and the export job's completion for the landing to
    record. `full` asks for everything (the landing still advances the marks)."""
    source = site.source
    if not isinstance(source, BulkSource):
        raise TypeError(f"site {site.id}: not a kind: bulk source")
    with ExitStack() as stack:
        folder = stack.enter_context(
            staging_folder(work_dir, site.id, load_id, keep_days=source.keep_extract_days)
        )
        if client is None:
            client = stack.enter_context(client_for(site.id, source))
        export = _Export(con, client, site.id, source, load_id, sleep, now)
        job, manifest = export.manifest(full)
        try:
            files, errors = download_files(export, manifest, folder)
            deleted = download_deleted(export, manifest, folder)
        except SourceError as exc:
            export.give_up(job, "failed", str(exc), cancel=True)
            raise

        def finished(con: duckdb.DuckDBPyConnection, landed_by: str) -> None:
            finish_job(
                con,
                job,
                JobOutcome(
                    "complete",
                    landed_by,
                    now(),
                    transaction_time=manifest.transaction_time,
                    output_files=len(manifest.output),
                    error_files=errors.files,
                    error_lines=errors.lines,
                    error_paths=errors.paths,
                ),
            )

        def forget(resources: int, deletions: int) -> None:
            log.info(
                "site %s: export landed: %d files, %d resources, %d error files, "
                "%d deletion files (%d deletions)",
                site.id, len(files), resources, errors.files, len(deleted), deletions,
            )  # fmt: skip
            export.forget(job)

        yield Fetched(
            files,
            deleted,
            marks=dict.fromkeys(job.types, manifest.transaction_time),
            on_landed=finished,
            after_landed=forget,
        )
