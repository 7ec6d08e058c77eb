"""The next site's new files, classified while this site's load finishes.

`rescue run` lands its sites one after another, each in a Dagster run and a transaction of its
own. Between two, the worker processes would wait: through the end of one site's insert, its
commit and checkpoint, the end of its run and the start of the next, and the hashing of the
next site's files. So the command names every site in the order they load (`expect`); once a
load has handed its last span to the workers, a thread of this process hashes the next site's
files that are surely new (a size its ledger has not seen, or every file of a full reload) and
hands their first spans to the workers (`begin_next`), and that site's load takes these plans
and chunks instead of making them again (`take_plan`, `take_chunk`). Whatever is not taken is
dropped (`done`, `keep_only`, `drop_begun`, `discard`), its spilled versions with it.

What a span classifies to depends only on its bytes, which the worker checks against the
plan's crc32. A plan made ahead is taken only while the file's size, modification time and
inode are those it was planned at, and chunks only with their file's plan: a file changed in
between is planned again and read as it then is. A chunk whose classification failed is
classified again by the load. This is only a speed-up: whatever goes wrong here, the load
does the work itself.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from rescue_pipeline.extract.ndjson import SourceFile
from rescue_pipeline.raw.chunks import (
    ClassifiedChunk,
    FilePlan,
    Span,
    classify_span,
    drop_unread,
    plan_spans,
    private_spill,
    release_spill,
    spill_dir,
)

log = logging.getLogger(__name__)

# Spans classified ahead at most: each one's versions wait in shared memory (~10 MB a span)
# until the next load takes them, beside the current load's own spans in flight.
AHEAD_SPANS = 16


@dataclass
class _Site:
    site_id: str
    files: list[SourceFile]
    reread: bool
    new: list[SourceFile] | None = None  # the files surely new, once the ledger was read
    new_bytes: int = 0
    plans: dict[tuple[str, str], tuple[tuple[int, int, int], FilePlan]] = field(
        default_factory=dict
    )
    chunks: dict[Span, Future[ClassifiedChunk]] = field(default_factory=dict)
    taken: list[Future[ClassifiedChunk]] = field(default_factory=list)
    spill: str | None = None
    worker: threading.Thread | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


_LOCK = threading.Lock()
_EXPECTED: list[_Site] = []  # in the order they will load
_STARTED: dict[str, _Site] = {}  # site id -> the work begun for it


def expect(site_id: str, files: Iterable[SourceFile], *, reread: bool = False) -> None:
    """`site_id` loads in this process after the sites expected before it, from these files
    (a full reload when `reread`; none for a source that is fetched when it loads). Work is
    begun for a site only while the one expected just before it loads."""
    with _LOCK:
        _EXPECTED.append(_Site(site_id, list(files), reread))


def read_ledger(con: duckdb.DuckDBPyConnection, after: str) -> None:
    """Before `after`'s load begins (its connection is free then): which files of the site
    expected next are surely new, by the sizes its ledger has."""
    with _LOCK:
        upcoming = _next_after(after)
    if upcoming is None or upcoming.new is not None:
        return
    new: list[SourceFile] = []
    if upcoming.files:
        new, upcoming.new_bytes = surely_new(
            con, upcoming.site_id, upcoming.files, reread=upcoming.reread
        )
    upcoming.new = new


def surely_new(
    con: duckdb.DuckDBPyConnection, site_id: str, sources: list[SourceFile], *, reread: bool
) -> tuple[list[SourceFile], int]:
    """The files of `site_id` that will surely be read, and their bytes: every file when
    `reread`, else those whose size no ledger entry of theirs has. A file that cannot be read
    is left to its load to report."""
    known = set(
        con.execute(
            "SELECT source, size_bytes FROM ops.landed_files WHERE site_id = ?", [site_id]
        ).fetchall()
    )
    new: list[SourceFile] = []
    total = 0
    for source in sources:
        try:
            size = source.path.stat().st_size
        except OSError:
            continue
        if reread or (source.label, size) not in known:
            new.append(source)
            total += size
    return new, total


def begin_next(after: str, pool: ProcessPoolExecutor, span_bytes: int, min_bytes: int) -> None:
    """`after` has handed every span to `pool`: start on the next expected site's new files,
    when they are enough for its load to use workers too (`min_bytes`): hashed into spans of
    `span_bytes` (the load's own) by a thread here, classified in the pool, AHEAD_SPANS spans
    at most. Never raises: the next load does the work itself."""
    with _LOCK:
        upcoming = _next_after(after)
        if (
            upcoming is None
            or not upcoming.new
            or upcoming.new_bytes < min_bytes
            or upcoming.site_id in _STARTED
        ):
            return
        try:
            upcoming.spill = private_spill(spill_dir())
            upcoming.worker = threading.Thread(
                target=_plan_and_submit,
                args=(upcoming, pool, span_bytes),
                name="rescue-ahead",
                daemon=True,
            )
            upcoming.worker.start()
        except (OSError, RuntimeError) as exc:
            log.info("the next site's files are not classified ahead: %s", type(exc).__name__)
            if upcoming.spill is not None:
                release_spill(upcoming.spill)
                upcoming.spill = None
            upcoming.worker = None
            return
        _STARTED[upcoming.site_id] = upcoming


def _plan_and_submit(site: _Site, pool: ProcessPoolExecutor, span_bytes: int) -> None:
    """The planning thread: never raises (a failure leaves the rest to the load)."""
    budget = AHEAD_SPANS
    for source in site.new or ():
        if site.cancel.is_set():
            return
        try:
            before = _identity(source.path)
            plan = plan_spans(str(source.path), source.resource_type, span_bytes)
            if _identity(source.path) != before:
                continue  # changing as it was read: the load reads it as it then is
        except OSError:
            continue  # the load plans it again and says what is wrong
        site.plans[(str(source.path), source.resource_type)] = (before, plan)
        for span in plan.spans:
            if budget == 0 or site.cancel.is_set():
                return
            try:
                site.chunks[span] = pool.submit(classify_span, span, site.spill)
            except Exception:
                return
            budget -= 1


def _identity(path: Path) -> tuple[int, int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns, info.st_ino


def _next_after(site_id: str) -> _Site | None:
    """The site expected just after `site_id` (None when `site_id` is not expected)."""
    ids = [s.site_id for s in _EXPECTED]
    at = ids.index(site_id) + 1 if site_id in ids else len(ids)
    return _EXPECTED[at] if at < len(_EXPECTED) else None


def _begun(site_id: str) -> _Site | None:
    """The work begun for `site_id`, once its planning thread is done (None if none)."""
    with _LOCK:
        site = _STARTED.get(site_id)
    if site is not None and site.worker is not None:
        site.worker.join()
    return site


def take_plan(site_id: str, source: SourceFile) -> FilePlan | None:
    """The plan made ahead for this file of `site_id`, if the file is as it was then. When it
    is not, the chunks made from that plan are not taken either."""
    site = _begun(site_id)
    if site is None:
        return None
    key = (str(source.path), source.resource_type)
    found = site.plans.pop(key, None)
    if found is None:
        return None
    identity, plan = found
    try:
        if _identity(source.path) == identity:
            return plan
    except OSError:
        pass
    for span in plan.spans:  # a chunk is taken only with the plan it was made from
        future = site.chunks.pop(span, None)
        if future is not None:
            site.taken.append(future)  # dropped with the site's work, its file with it
    return None


def take_chunk(site_id: str, span: Span) -> Future[ClassifiedChunk] | None:
    """The classification begun ahead for this very span of `site_id`, if any (the load
    classifies it again should it have failed)."""
    site = _begun(site_id)
    if site is None:
        return None
    future = site.chunks.pop(span, None)
    if future is not None:
        site.taken.append(future)
    return future


def done(site_id: str) -> None:
    """`site_id`'s load is over: what it did not take is dropped."""
    with _LOCK:
        site = _STARTED.pop(site_id, None)
    if site is not None:
        _drop(site)


def keep_only(site_id: str) -> None:
    """`site_id` is loading now: the sites expected up to it are passed (their turn is over,
    loaded or not), and work begun for any other site is stale (its load failed before it took
    it, or the order changed) and is dropped."""
    with _LOCK:
        ids = [s.site_id for s in _EXPECTED]
        if site_id in ids:
            del _EXPECTED[: ids.index(site_id)]  # this one stays: the next is found after it
        stale = [s for s in _STARTED.values() if s.site_id != site_id]
        for site in stale:
            del _STARTED[site.site_id]
    for site in stale:
        _drop(site)


def drop_begun() -> None:
    """Drop all work begun (the pool it was handed to is being stopped); the sites expected
    stay, for work begun anew with the next pool."""
    with _LOCK:
        begun = list(_STARTED.values())
        _STARTED.clear()
    for site in begun:
        _drop(site)


def discard() -> None:
    """Forget every expected site and drop all work begun (the landing is over)."""
    with _LOCK:
        _EXPECTED.clear()
    drop_begun()


def _drop(site: _Site) -> None:
    """Wait for the site's planning thread and classifications (none is cancelled once
    running), then remove its spilled versions and their folder."""
    site.cancel.set()
    if site.worker is not None:
        site.worker.join()
    drop_unread([*site.chunks.values(), *site.taken])
    site.chunks.clear()
    site.taken.clear()
    site.plans.clear()
    if site.spill is not None:
        release_spill(site.spill)
        site.spill = None
