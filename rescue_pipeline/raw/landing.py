"""Landing: every line received becomes a stored version or a quarantine row, never neither.

One transaction per site load holds the new versions, the quarantine rows, the load counts and
the files' ledger entries, so a load killed at any point leaves the raw layer as it was and the
next run lands it again; a file already in the ledger (same site, name, sha256) is not re-read.
(One commit per load rather than per file: each DuckDB commit of this size checkpoints, and
per-file commits cost more than the whole insert.)
Versions are deduplicated in SQL against what is stored (site, payload sha256), so reloading the
same bytes adds nothing, and which version is current is decided by the raw.fhir_resources view.
Large loads classify their chunks in worker processes while this process inserts (chunks.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rescue_pipeline.extract.ndjson import SourceError, SourceFile
from rescue_pipeline.raw import ahead
from rescue_pipeline.raw.chunks import (
    VERSION_SCHEMA,
    ClassifiedChunk,
    FileChanged,
    FilePlan,
    Span,
    classify_span,
    drop_unread,
    plan_spans,
    private_spill,
    release_spill,
    spill_dir,
)
from rescue_pipeline.raw.workers import WORKERS_MAX, available, shutdown_pools
from rescue_pipeline.raw.workers import pool as worker_pool
from rescue_pipeline.raw.workers import start as start_workers
from rescue_pipeline.warehouse.database import transaction

if TYPE_CHECKING:
    from rescue_pipeline.raw.deletions import DeletionResult

SPAN_BYTES = 8 * 2**20
# Below this many bytes to read, worker processes cost more to start than they save.
PARALLEL_MIN_BYTES = 32 * 2**20

# One statement per load, fed by a stream of classified spans: DuckDB then writes whole row
# groups as it goes (many small INSERTs would leave it all to a slow, single-threaded COMMIT).
_INSERT_VERSIONS = """
INSERT INTO raw.fhir_resource_versions
SELECT $site, b.resource_type, b.resource_id, b.version_id, TRY_CAST(b.last_updated AS TIMESTAMPTZ),
       b.payload::JSON, b.payload_sha256, $now, $load, b.arrival, b.source, b.line_number,
       b.as_received
FROM landing_stream b
WHERE NOT EXISTS (
    SELECT 1 FROM raw.fhir_resource_versions v
    WHERE v.site_id = $site AND v.payload_sha256 = b.payload_sha256
)
"""
# A version that came twice in this load (the same bytes in two files or spans): the first
# arrival stays. The streaming insert cannot see its own rows, so this runs after it, in DuckDB
# (bounded by its memory limit, spilling past it), not as a Python set of every digest (some
# 250 MB for a 3-million-line load). This load's arrivals are numbered past every row already
# stored, and the load holds the writer lock: `arrival > $before` is exactly this load's rows
# (one site's), and lets DuckDB skip the row groups of earlier loads.
_DROP_LATER_ARRIVALS = """
DELETE FROM raw.fhir_resource_versions v
USING (
    SELECT payload_sha256, min(arrival) AS first_arrival
    FROM raw.fhir_resource_versions
    WHERE arrival > $before
    GROUP BY payload_sha256
    HAVING count(*) > 1
) twice
WHERE v.payload_sha256 = twice.payload_sha256 AND v.arrival > twice.first_arrival
"""
_ARRIVAL = pa.field("arrival", pa.int64())
_STREAM_SCHEMA = VERSION_SCHEMA.append(_ARRIVAL).append(pa.field("source", pa.string()))
_INSERT_QUARANTINE = """
INSERT INTO raw.quarantine
SELECT $site, q.resource_type, q.resource_id, q.source, q.line_number, q.reason, q.element,
       q.detail, q.raw_bytes, q.bytes_sha256, $load, $now
FROM landing_quarantine q
WHERE NOT EXISTS (
    SELECT 1 FROM raw.quarantine x
    WHERE x.site_id = $site AND x.source = q.source AND x.line_number = q.line_number
      AND x.bytes_sha256 = q.bytes_sha256
)
"""
_UPSERT_LOAD = """
INSERT INTO raw.loads VALUES
    ($load, $site, $type, $received, $accepted, $quarantined, $new, $started, $now)
ON CONFLICT (load_id, site_id, resource_type) DO UPDATE SET
    received = received + excluded.received,
    accepted = accepted + excluded.accepted,
    quarantined = quarantined + excluded.quarantined,
    new_versions = new_versions + excluded.new_versions,
    finished_at = excluded.finished_at
"""


@dataclass
class TypeCounts:
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    new_versions: int = 0

    def add(self, other: TypeCounts) -> None:
        self.received += other.received
        self.accepted += other.accepted
        self.quarantined += other.quarantined
        self.new_versions += other.new_versions


@dataclass
class LoadResult:
    load_id: str
    site_id: str
    counts: dict[str, TypeCounts] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    files_read: int = 0
    files_unchanged: int = 0
    seconds: float = 0.0
    deletions: DeletionResult | None = None  # the deletion files' counts, when the source has any

    def total(self) -> TypeCounts:
        out = TypeCounts()
        for c in self.counts.values():
            out.add(c)
        return out


def new_load_id(site_id: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{site_id}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _workers_for(files: list[tuple[SourceFile, FilePlan]]) -> int:
    size = sum(plan.size for _, plan in files)
    return available() if size >= PARALLEL_MIN_BYTES else 0


def land_files(
    con: duckdb.DuckDBPyConnection,
    site_id: str,
    files: Iterable[SourceFile],
    *,
    load_id: str,
    reread: bool = False,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Land a site's files; returns what was received, accepted and quarantined per type.

    `reread` reads files the ledger says were landed already (a full reload); the version
    hashes keep it from adding duplicates. `workers` classify spans in parallel (default: by
    size). `progress(n)` is told of every n further lines read.
    """
    started = time.perf_counter()
    result = LoadResult(load_id, site_id)
    sources = list(files)
    try:
        ahead.keep_only(site_id)
        ahead.read_ledger(con, after=site_id)
        # a file of a known size may still be new: found so once hashed, the pool then starts
        # at its first span
        _, new_bytes = ahead.surely_new(con, site_id, sources, reread=reread)
        if workers is None and new_bytes >= PARALLEL_MIN_BYTES:
            # they start while the files are hashed; failing, the load starts them itself
            with contextlib.suppress(Exception):
                start_workers(available())
        todo: list[tuple[SourceFile, FilePlan]] = []
        for source in sources:
            # one pass cuts the file into spans and hashes exactly those bytes
            plan = ahead.take_plan(site_id, source) or plan_spans(
                str(source.path), source.resource_type, SPAN_BYTES
            )
            seen = con.execute(
                "SELECT 1 FROM ops.landed_files "
                "WHERE site_id = ? AND source = ? AND file_sha256 = ?",
                [site_id, source.label, plan.sha256],
            ).fetchall()
            if seen and not reread:
                result.files_unchanged += 1
            else:
                todo.append((source, plan))
        if todo:
            count = _workers_for(todo) if workers is None else workers
            pool = worker_pool(count) if count > 0 else None
            try:
                with transaction(con):
                    _land(con, site_id, todo, load_id, pool, result, progress)
            except FileChanged as exc:  # rolled back whole; the next load reads it as it is
                raise SourceError(f"site {site_id}: {exc}") from None
            except BaseException:
                if pool is not None:  # a worker may have died: start afresh next time
                    ahead.drop_begun()
                    shutdown_pools()
                raise
    finally:
        ahead.done(site_id)  # what was classified ahead and not taken goes
    result.files_read = len(todo)
    result.seconds = time.perf_counter() - started
    return result


def _land(
    con: duckdb.DuckDBPyConnection,
    site_id: str,
    todo: list[tuple[SourceFile, FilePlan]],
    load_id: str,
    pool: ProcessPoolExecutor | None,
    result: LoadResult,
    progress: Callable[[int], None] | None,
) -> None:
    now = dt.datetime.now(dt.UTC)
    arrival = int(
        con.execute("SELECT coalesce(max(arrival), 0) FROM raw.fhir_resource_versions").fetchall()[
            0
        ][0]
    )
    before = arrival  # every version of this load arrives after it
    bases: list[pa.Scalar[Any]] = []
    for _, plan in todo:  # arrival = base + line number, so each file starts past the last
        bases.append(pa.scalar(arrival, pa.int64()))
        arrival += plan.lines
    plans = [plan.spans for _, plan in todo]
    quarantined: list[pa.Table] = []
    failure: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        """Classified spans in order, tallied as they pass; DuckDB pulls them."""
        try:
            stream = _classified(site_id, plans, pool)
            for (source, _), spans, base in zip(todo, plans, bases, strict=True):
                label = pa.scalar(source.label, pa.string())
                for _ in spans:
                    chunk = next(stream)
                    _tally(result, chunk)
                    if chunk.quarantine.num_rows:
                        column = pa.repeat(label, chunk.quarantine.num_rows)
                        quarantined.append(chunk.quarantine.append_column("source", column))
                    versions = chunk.take_versions()
                    if progress:
                        progress(chunk.lines)
                    if versions.num_rows:
                        arrivals = pc.add(versions["line_number"], base)
                        column = pa.repeat(label, versions.num_rows)
                        yield from (
                            versions.append_column(_ARRIVAL, arrivals)
                            .append_column("source", column)
                            .to_batches()
                        )
        except BaseException as exc:  # DuckDB would only see a generic error
            failure.append(exc)
            raise

    reader = pa.RecordBatchReader.from_batches(_STREAM_SCHEMA, batches())
    params = {"site": site_id, "load": load_id, "now": now}
    con.register("landing_stream", reader)  # replaced by the next load if this one fails
    try:
        con.execute(_INSERT_VERSIONS, params)
    except duckdb.Error:
        if failure:
            raise failure[0] from None
        raise
    con.unregister("landing_stream")
    con.execute(_DROP_LATER_ARRIVALS, {"before": before})
    if quarantined:
        con.register("landing_quarantine", pa.concat_tables(quarantined))
        con.execute(_INSERT_QUARANTINE, params)
        con.unregister("landing_quarantine")
    new = con.execute(
        "SELECT resource_type, count(*) FROM raw.fhir_resource_versions "
        "WHERE load_id = ? GROUP BY ALL",
        [load_id],
    ).fetchall()
    for rtype, n in new:
        result.counts.setdefault(rtype, TypeCounts()).new_versions = int(n)
    for rtype, c in result.counts.items():
        con.execute(
            _UPSERT_LOAD,
            {
                "load": load_id,
                "site": site_id,
                "now": dt.datetime.now(dt.UTC),
                "type": rtype,
                "received": c.received,
                "accepted": c.accepted,
                "quarantined": c.quarantined,
                "new": c.new_versions,
                "started": now,
            },
        )
    for source, plan in todo:  # the hash and size of the bytes landed, not of the file now
        con.execute(
            "INSERT INTO ops.landed_files VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [site_id, source.label, plan.sha256, plan.size, plan.lines, load_id, now],
        )


def _tally(result: LoadResult, chunk: ClassifiedChunk) -> None:
    for rtype, n in chunk.counts.received.items():
        c = result.counts.setdefault(rtype, TypeCounts())
        c.received += n
        c.accepted += chunk.counts.accepted[rtype]
        c.quarantined += chunk.counts.quarantined[rtype]
    result.reasons.update(chunk.counts.reasons)


def _classified(
    site_id: str, plans: list[list[Span]], pool: ProcessPoolExecutor | None
) -> Iterator[ClassifiedChunk]:
    """Every span of every file, classified, in order: inline, or in the pool.

    With a pool, the next spans are being classified while DuckDB inserts the current one; a
    few spans in flight keep memory bounded. A span classified ahead (`ahead`) is taken as it
    is; once every span is in the pool, the next expected site's are begun.
    """
    spans = [span for plan in plans for span in plan]
    if pool is None:
        for span in spans:
            yield classify_span(span)
        return
    spill = private_spill(spill_dir())
    pending: deque[tuple[Span, Future[ClassifiedChunk], bool]] = deque()
    limit = 4 * WORKERS_MAX + 1

    def result(span: Span, future: Future[ClassifiedChunk], early: bool) -> ClassifiedChunk:
        try:
            return future.result()
        except Exception:
            if not early:
                raise
            return pool.submit(classify_span, span, spill).result()  # as if never begun early

    try:
        for span in spans:
            early = ahead.take_chunk(site_id, span)
            if early is not None:
                pending.append((span, early, True))
            else:
                pending.append((span, pool.submit(classify_span, span, spill), False))
            if len(pending) >= limit:
                yield result(*pending.popleft())
        ahead.begin_next(site_id, pool, SPAN_BYTES, PARALLEL_MIN_BYTES)
        while pending:
            yield result(*pending.popleft())
    finally:
        drop_unread(future for _, future, _ in pending)  # a failure part-way: no file left
        release_spill(spill)
