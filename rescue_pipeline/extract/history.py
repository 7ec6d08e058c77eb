"""Deletions from a REST site: type-level history (`GET [base]/[Type]/_history?_since=`), the
entries whose request.method is DELETE (or whose response.status is 410), written as deletion
Bundles (one a page) for the landing to record in raw.deletions.

Where reading starts: the type's deletion mark (ops.deletion_marks), else the type's search mark
from before this load; a type never landed has nothing to delete, so its first load reads no
history and its deletion mark starts at its new search mark. `--full` reads the whole history.
The mark becomes the latest change the history showed minus the overlap window, once the landing
commits; a read cut short leaves it where it was.

Not every server has type-level history. The CapabilityStatement (`/metadata`, read once per
load) is asked whether a type has the `history-type` interaction, and a 4xx answer to a history
request means the same: logged once per load, and the load carries on without deletions for
those types. Any other failure of the history read is logged as a warning and leaves the type's
mark for the next run: it never fails the load. Each type's read is bounded in pages, bytes and
seconds (history_max_pages, history_max_bytes, history_max_seconds); past a bound it stops with a
warning, keeps what it read, and the mark stays (servers list history newest first, so the bound
must be raised for older deletions to be read).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from rescue_pipeline.config import FhirSource
from rescue_pipeline.extract.http import FhirHttpClient, HttpError
from rescue_pipeline.extract.ndjson import DELETED, DeletionFile, SourceError
from rescue_pipeline.extract.paging import pages
from rescue_pipeline.extract.watermarks import format_mark
from rescue_pipeline.instants import utc_instant

log = logging.getLogger(__name__)

HISTORY_TYPE = "history-type"


@dataclass
class HistoryRead:
    """What the history reads of one load wrote, and where each type's next read starts."""

    files: list[DeletionFile] = field(default_factory=list)
    marks: dict[str, dt.datetime] = field(default_factory=dict)
    deletions: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)  # type -> why


def is_deletion(entry: dict[str, Any]) -> bool:
    request = entry.get("request")
    response = entry.get("response")
    if isinstance(request, dict) and request.get("method") == "DELETE":
        return True
    status = response.get("status") if isinstance(response, dict) else None
    return isinstance(status, str) and status.startswith("410")


def _changed_at(entry: dict[str, Any]) -> dt.datetime | None:
    """When a history entry's change happened: response.lastModified, else meta.lastUpdated."""
    response = entry.get("response")
    when = utc_instant(response.get("lastModified")) if isinstance(response, dict) else None
    resource = entry.get("resource")
    meta = resource.get("meta") if isinstance(resource, dict) else None
    return when or utc_instant(meta.get("lastUpdated") if isinstance(meta, dict) else None)


def history_types(client: FhirHttpClient, site_id: str, source: FhirSource) -> set[str] | None:
    """Types whose CapabilityStatement lists history-type; None when it cannot tell (no
    statement, or one without a resource list): then each type's history is tried."""
    try:
        response = client.get(f"{source.base_url.rstrip('/')}/metadata")
        statement = orjson.loads(response.content)
    except (SourceError, orjson.JSONDecodeError):
        return None
    if not isinstance(statement, dict) or statement.get("resourceType") != "CapabilityStatement":
        return None
    listed: set[str] = set()
    supported: set[str] = set()
    for rest in statement.get("rest") or ():
        for resource in (rest.get("resource") or ()) if isinstance(rest, dict) else ():
            if not isinstance(resource, dict) or not isinstance(resource.get("type"), str):
                continue
            listed.add(resource["type"])
            codes = {
                i.get("code") for i in resource.get("interaction") or () if isinstance(i, dict)
            }
            if HISTORY_TYPE in codes:
                supported.add(resource["type"])
    return supported if listed else None


@dataclass
class _TypeRead:
    deletions: int = 0
    pages: int = 0
    bytes: int = 0
    latest: dt.datetime | None = None
    complete: bool = True


def read_type_history(
    client: FhirHttpClient,
    site_id: str,
    source: FhirSource,
    resource_type: str,
    since: dt.datetime | None,
    out: Callable[[], IO[bytes]],
    clock: Callable[[], float] = time.monotonic,
) -> _TypeRead:
    """One type's history since `since`: each page's deletion entries go to out() as one Bundle
    line (with the page's timestamps and its URL); stops at the site's bounds."""
    params = {"_count": str(source.page_size)}
    if since is not None:
        params["_since"] = format_mark(since)
    url = f"{source.base_url.rstrip('/')}/{resource_type}/_history"
    read = _TypeRead()
    started = clock()
    for shown, page, size in pages(client, site_id, url, params, keep=("_since",)):
        read.pages += 1
        read.bytes += size
        gone = []
        for entry in page.get("entry") or ():
            if not isinstance(entry, dict):
                continue
            when = _changed_at(entry)
            if when is not None and (read.latest is None or when > read.latest):
                read.latest = when
            if is_deletion(entry):
                gone.append(entry)
        if gone:
            line: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
            for key in ("timestamp", "meta"):
                if key in page:
                    line[key] = page[key]
            line["link"] = [{"relation": "self", "url": shown}]
            line["entry"] = gone
            out().write(orjson.dumps(line) + b"\n")
            read.deletions += len(gone)
        bound = _past_bound(source, read, clock() - started)
        if bound and _has_next(page):
            read.complete = False
            log.warning(
                "site %s: %s history: stopped after %d pages (%s); the deletions read are kept, "
                "older ones wait for a run with a higher bound (the mark stays)",
                site_id,
                resource_type,
                read.pages,
                bound,
            )
            break
    return read


def _has_next(page: dict[str, Any]) -> bool:
    return any(
        isinstance(link, dict) and link.get("relation") == "next" for link in page.get("link") or ()
    )


def _past_bound(source: FhirSource, read: _TypeRead, seconds: float) -> str | None:
    if read.pages >= source.history_max_pages:
        return f"history_max_pages {source.history_max_pages}"
    if read.bytes >= source.history_max_bytes:
        return f"history_max_bytes {source.history_max_bytes}"
    if seconds >= source.history_max_seconds:
        return f"history_max_seconds {source.history_max_seconds:g}"
    return None


def read_deletions(
    client: FhirHttpClient,
    site_id: str,
    source: FhirSource,
    folder: Path,
    *,
    search_marks: dict[str, dt.datetime],
    deletion_marks: dict[str, dt.datetime],
    new_search_marks: dict[str, dt.datetime],
    full: bool,
    types: tuple[str, ...],
    clock: Callable[[], float] = time.monotonic,
) -> HistoryRead:
    """Read every type's deletions into folder/deleted/<Type>.ndjson (see the module's doc)."""
    result = HistoryRead()
    overlap = dt.timedelta(seconds=source.overlap_seconds)
    todo: dict[str, dt.datetime | None] = {}
    for rtype in types:
        since = None if full else deletion_marks.get(rtype) or search_marks.get(rtype)
        if since is None and not full:
            if rtype in new_search_marks:  # first landing of the type: start from here on
                result.marks[rtype] = new_search_marks[rtype]
            continue
        todo[rtype] = since
    if not todo:
        return result
    known = history_types(client, site_id, source)
    for rtype, since in todo.items():
        if known is not None and rtype not in known:
            result.unsupported[rtype] = "no history-type interaction in its CapabilityStatement"
            continue
        path = folder / DELETED / f"{rtype}.ndjson"
        with _LazyFile(path) as out:
            try:
                read = read_type_history(client, site_id, source, rtype, since, out, clock)
            except HttpError as exc:
                if exc.status is not None and (400 <= exc.status < 500 or exc.status == 501):
                    result.unsupported[rtype] = str(exc)
                else:
                    log.warning("site %s: %s history not read this time: %s", site_id, rtype, exc)
                continue
            except SourceError as exc:
                log.warning("site %s: %s history not read this time: %s", site_id, rtype, exc)
                continue
            finally:
                if out.opened:
                    result.files.append(
                        DeletionFile(path, f"rest/{folder.name}/{DELETED}/{rtype}.ndjson")
                    )
        result.deletions[rtype] = read.deletions
        if read.complete:
            latest = read.latest - overlap if read.latest is not None else since
            if latest is not None:
                result.marks[rtype] = latest
        log.info(
            "site %s: %s history: %d deletions in %d pages", site_id, rtype, read.deletions,
            read.pages,
        )  # fmt: skip
    if result.unsupported:
        first = next(iter(result.unsupported.values()))
        log.warning(
            "site %s: type-level history unsupported for %s (%s): deletions at the site are not "
            "seen for these types; the load carries on",
            site_id,
            ", ".join(sorted(result.unsupported)),
            first,
        )
    return result


class _LazyFile:
    """A file created on the first write only (a type with no deletions leaves none)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    @property
    def opened(self) -> bool:
        return self._file is not None

    def __call__(self) -> IO[bytes]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("wb")
        return self._file

    def __enter__(self) -> _LazyFile:
        return self

    def __exit__(self, *_: object) -> None:
        if self._file is not None:
            self._file.close()
