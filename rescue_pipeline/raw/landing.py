"""Landing: every line received becomes a stored version or a quarantine row, never neither.

Per file, one transaction holds the new versions, the quarantine rows, the load counts and the
file's ledger entry, so a load killed at any point leaves whole files landed and the rest for the
next run; a file already in the ledger (same site, name and sha256) is not read again.
Versions are deduplicated in SQL against what is stored (site, payload sha256), so reloading the
same bytes adds nothing, and which version is current is decided by the raw.fhir_resources view.
Large loads classify their chunks in worker processes while this process inserts (chunks.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from rescue_pipeline.extract.ndjson import SourceFile
from rescue_pipeline.raw.chunks import ClassifiedChunk, Span, classify_span, plan_spans, spill_dir

SPAN_BYTES = 8 * 2**20
# Below this many bytes to read, worker processes cost more to start than they save.
PARALLEL_MIN_BYTES = 32 * 2**20
WORKERS_MAX = 4

_INSERT_VERSIONS = """
INSERT INTO raw.fhir_resource_versions
SELECT $site, b.resource_type, b.resource_id, b.version_id, TRY_CAST(b.last_updated AS TIMESTAMPTZ),
       b.payload::JSON, b.payload_sha256, $now, $load, b.arrival, $source, b.line_number
FROM landing_batch b
WHERE NOT EXISTS (
    SELECT 1 FROM raw.fhir_resource_versions v
    WHERE v.site_id = $site AND v.payload_sha256 = b.payload_sha256
)
"""
_INSERT_QUARANTINE = """
INSERT INTO raw.quarantine
SELECT $site, q.resource_type, q.resource_id, $source, q.line_number, q.reason, q.element, q.detail,
       q.raw_bytes, q.bytes_sha256, $load, $now
FROM landing_quarantine q
WHERE NOT EXISTS (
    SELECT 1 FROM raw.quarantine x
    WHERE x.site_id = $site AND x.source = $source AND x.line_number = q.line_number
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


def _workers_for(files: list[tuple[SourceFile, str]]) -> int:
    size = sum(source.path.stat().st_size for source, _ in files)
    return min(os.cpu_count() or 1, WORKERS_MAX) if size >= PARALLEL_MIN_BYTES else 0


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
    started_at = dt.datetime.now(dt.UTC)
    result = LoadResult(load_id, site_id)
    todo: list[tuple[SourceFile, str]] = []
    for source in files:
        sha = file_sha256(source.path)
        seen = con.execute(
            "SELECT 1 FROM ops.landed_files WHERE site_id = ? AND source = ? AND file_sha256 = ?",
            [site_id, source.label, sha],
        ).fetchall()
        if seen and not reread:
            result.files_unchanged += 1
        else:
            todo.append((source, sha))
    arrival = int(
        con.execute("SELECT coalesce(max(arrival), 0) FROM raw.fhir_resource_versions").fetchall()[
            0
        ][0]
    )
    plans: list[list[Span]] = []
    for source, _ in todo:  # arrival = base + line number, so each file starts past the last
        spans, lines = plan_spans(str(source.path), source.resource_type, arrival, SPAN_BYTES)
        plans.append(spans)
        arrival += lines
    workers = _workers_for(todo) if workers is None else workers
    pool = (
        ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        if workers > 0
        else None
    )
    try:
        stream = _classified(plans, pool)
        for (source, sha), spans in zip(todo, plans, strict=True):
            _land_file(
                con, site_id, source, sha, load_id, started_at, spans, stream, result, progress
            )
            result.files_read += 1
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    result.seconds = time.perf_counter() - started
    return result


def _classified(
    plans: list[list[Span]], pool: ProcessPoolExecutor | None
) -> Iterator[ClassifiedChunk]:
    """Every span of every file, classified, in order: inline, or in the pool.

    With a pool, spans of the next file are already being classified while this process
    inserts and commits the current one; a few spans in flight keep memory bounded.
    """
    spans = [span for plan in plans for span in plan]
    if pool is None:
        for span in spans:
            yield classify_span(span)
        return
    spill = spill_dir()
    pending: deque[Future[ClassifiedChunk]] = deque()
    limit = 2 * WORKERS_MAX + 1
    try:
        for span in spans:
            pending.append(pool.submit(classify_span, span, spill))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # a failure part-way: leave no spilled files behind
            if future.cancel():
                continue
            try:
                chunk = future.result()
            except Exception:  # noqa: S112 - the original failure is what the caller sees
                continue
            if chunk.versions_path:
                Path(chunk.versions_path).unlink(missing_ok=True)


def _land_file(
    con: duckdb.DuckDBPyConnection,
    site_id: str,
    source: SourceFile,
    sha: str,
    load_id: str,
    started_at: dt.datetime,
    spans: list[Span],
    stream: Iterator[ClassifiedChunk],
    result: LoadResult,
    progress: Callable[[int], None] | None,
) -> None:
    now = dt.datetime.now(dt.UTC)
    params = {"site": site_id, "source": source.label, "load": load_id, "now": now}
    counts: dict[str, TypeCounts] = {}
    lines = 0
    con.execute("BEGIN")
    try:
        for _ in spans:
            chunk = next(stream)
            lines += chunk.lines
            versions = chunk.take_versions()
            if versions.num_rows:
                con.register("landing_batch", versions)
                con.execute(_INSERT_VERSIONS, params)
                con.unregister("landing_batch")
            if chunk.quarantine.num_rows:
                con.register("landing_quarantine", chunk.quarantine)
                con.execute(_INSERT_QUARANTINE, params)
                con.unregister("landing_quarantine")
            for rtype, n in chunk.counts.received.items():
                c = counts.setdefault(rtype, TypeCounts())
                c.received += n
                c.accepted += chunk.counts.accepted[rtype]
                c.quarantined += chunk.counts.quarantined[rtype]
            result.reasons.update(chunk.counts.reasons)
            if progress:
                progress(chunk.lines)
        new = dict(
            con.execute(
                "SELECT resource_type, count(*) FROM raw.fhir_resource_versions "
                "WHERE load_id = ? AND source = ? GROUP BY ALL",
                [load_id, source.label],
            ).fetchall()
        )
        for rtype, c in counts.items():
            c.new_versions = int(new.get(rtype, 0))
            con.execute(
                _UPSERT_LOAD,
                {
                    "load": load_id,
                    "site": site_id,
                    "now": now,
                    "type": rtype,
                    "received": c.received,
                    "accepted": c.accepted,
                    "quarantined": c.quarantined,
                    "new": c.new_versions,
                    "started": started_at,
                },
            )
        con.execute(
            "INSERT INTO ops.landed_files VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [site_id, source.label, sha, source.path.stat().st_size, lines, load_id, now],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    for rtype, c in counts.items():
        result.counts.setdefault(rtype, TypeCounts()).add(c)
