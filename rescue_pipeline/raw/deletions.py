"""Landing deletions: every deletion a site reports becomes a raw.deletions row or a quarantine
row, never neither.

A deletion file holds one FHIR Bundle a line (the Bulk Data `deleted` layout); each entry with
`request.method` DELETE and `request.url` `Type/id` is a deletion (an entry without a request but
with `response.status` 410 is one too: a history entry of a deleted resource). Its instant is the
entry's `response.lastModified`, else the Bundle's `timestamp` or `meta.lastUpdated`, else the
source's own instant (a Bulk export's transactionTime, a file's modification time, the time it
was received); `deleted_at_basis` says which.

A line that is not a Bundle with entries, an entry that names no `Type/id` or another method, a
timestamp that is not an instant: quarantined with the bytes (the line, or the entry as parsed),
the reason and the element, and a one-line warning naming the site, the type and the field,
never a value. The same deletion (site, type, id, instant) received again adds nothing. Which
resources a deletion hides is the raw.fhir_resources view's rule (warehouse/tables.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from rescue_pipeline.extract.ndjson import DeletionFile
from rescue_pipeline.fhir_types import r4_resource_types
from rescue_pipeline.instants import utc_instant
from rescue_pipeline.raw.chunks import QUARANTINE_SCHEMA
from rescue_pipeline.raw.landing import file_sha256
from rescue_pipeline.raw.structure import REASONS
from rescue_pipeline.warehouse.database import transaction

log = logging.getLogger(__name__)

# [base/]Type/id[/_history/vid]: an absolute URL (fullUrl) or a relative one (request.url).
_URL_RE = re.compile(
    r"^(?:.*/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?\Z"
)
_ETAG_RE = re.compile(r'^(?:W/)?"?(?P<version>[^"\n]+)"?\Z')
UNREADABLE_TYPE = "Bundle"

_INSERT_DELETIONS = """
INSERT INTO raw.deletions
SELECT $site, d.resource_type, d.resource_id, d.deleted_at, d.deleted_at_basis, d.version_id,
       d.source, d.line_number, d.entry_index, d.entry::JSON, d.entry_sha256, $load, $now
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY resource_type, resource_id, deleted_at ORDER BY ordinal
    ) AS first_in_load
    FROM landing_deletions
) d
WHERE d.first_in_load = 1 AND NOT EXISTS (
    SELECT 1 FROM raw.deletions x
    WHERE x.site_id = $site AND x.resource_type = d.resource_type
      AND x.resource_id = d.resource_id AND x.deleted_at = d.deleted_at
)
RETURNING resource_type
"""
_INSERT_QUARANTINE = """
INSERT INTO raw.quarantine
SELECT DISTINCT ON (q.source, q.line_number, q.bytes_sha256)
       $site, q.resource_type, q.resource_id, q.source, q.line_number, q.reason, q.element,
       q.detail, q.raw_bytes, q.bytes_sha256, $load, $now
FROM landing_deletion_quarantine q
WHERE NOT EXISTS (
    SELECT 1 FROM raw.quarantine x
    WHERE x.site_id = $site AND x.source = q.source AND x.line_number = q.line_number
      AND x.bytes_sha256 = q.bytes_sha256
)
"""
_UPSERT_COUNTS = """
INSERT INTO raw.deletion_loads
VALUES ($load, $site, $type, $received, $recorded, $quarantined, $now)
ON CONFLICT (load_id, site_id, resource_type) DO UPDATE SET
    received = received + excluded.received,
    recorded = recorded + excluded.recorded,
    quarantined = quarantined + excluded.quarantined,
    finished_at = excluded.finished_at
"""


@dataclass
class DeletionCounts:
    received: int = 0
    recorded: int = 0
    quarantined: int = 0


@dataclass
class DeletionResult:
    """What one load's deletion files held, per resource type."""

    counts: dict[str, DeletionCounts] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    files_read: int = 0
    files_unchanged: int = 0

    def total(self) -> DeletionCounts:
        out = DeletionCounts()
        for c in self.counts.values():
            out.received += c.received
            out.recorded += c.recorded
            out.quarantined += c.quarantined
        return out


@dataclass
class _Parsed:
    deletions: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)


class _Reader:
    """One deletion file, line by line, into deletion rows and quarantine rows."""

    def __init__(self, site_id: str, source: DeletionFile, received: dt.datetime) -> None:
        self.site_id = site_id
        self.source = source
        self.fallback = source.default_time or received
        self.basis = source.default_basis if source.default_time else "received"
        self.types = r4_resource_types()
        self.out = _Parsed()
        self.lines = 0

    def reject(
        self,
        line: int,
        raw: bytes,
        reason: str,
        element: str | None,
        what: str,
        rtype: str | None = None,
        rid: str | None = None,
    ) -> None:
        where = f"{rtype}: " if rtype else ""
        detail = f"{where}{element + ': ' if element else ''}{what}"
        log.warning(
            "site %s: %s line %d: deletion quarantined: %s",
            self.site_id,
            self.source.label,
            line,
            detail,
        )
        self.out.quarantine.append(
            {
                "resource_type": rtype or UNREADABLE_TYPE,
                "resource_id": rid,
                "source": self.source.label,
                "line_number": line,
                "reason": reason,
                "element": element,
                "detail": detail,
                "raw_bytes": raw,
                "bytes_sha256": hashlib.sha256(raw).hexdigest(),
            }
        )

    def read(self) -> _Parsed:
        with self.source.path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                self.line(number, raw.rstrip(b"\r\n"))
                self.lines = number
        return self.out

    def line(self, number: int, raw: bytes) -> None:
        if not raw.strip():
            self.reject(number, raw, "empty_line", None, REASONS["empty_line"])
            return
        try:
            bundle = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.reject(number, raw, "not_json", None, REASONS["not_json"])
            return
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            self.reject(number, raw, "not_a_bundle", "resourceType", "is not Bundle")
            return
        entries = bundle.get("entry")
        if not isinstance(entries, list) or not entries:
            self.reject(number, raw, "not_a_bundle", "entry", "no entries")
            return
        meta = bundle.get("meta")
        bundle_time = utc_instant(bundle.get("timestamp")) or utc_instant(
            meta.get("lastUpdated") if isinstance(meta, dict) else None
        )
        for index, entry in enumerate(entries):
            self.entry(number, index, entry, bundle_time)

    def entry(self, number: int, index: int, entry: Any, bundle_time: dt.datetime | None) -> None:
        path = f"entry[{index}]"
        canonical = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        if not isinstance(entry, dict):
            self.reject(number, canonical, "invalid_deletion", path, "is not an object")
            return
        request = entry.get("request")
        response = entry.get("response")
        response = response if isinstance(response, dict) else {}
        gone = str(response.get("status") or "").startswith("410")
        if isinstance(request, dict):
            method, url, url_path = request.get("method"), request.get("url"), "request.url"
        elif gone:
            method, url, url_path = "DELETE", entry.get("fullUrl"), "fullUrl"
        else:
            self.reject(number, canonical, "invalid_deletion", f"{path}.request", "is missing")
            return
        match = _URL_RE.match(url) if isinstance(url, str) else None
        rtype = match.group("type") if match and match.group("type") in self.types else None
        rid = match.group("id") if match and rtype else None
        if method != "DELETE":
            self.reject(
                number, canonical, "invalid_deletion", f"{path}.request.method", "is not DELETE",
                rtype, rid,
            )  # fmt: skip
            return
        if rtype is None or rid is None:
            self.reject(
                number, canonical, "invalid_deletion", f"{path}.{url_path}",
                "is missing or not Type/id of a FHIR R4 resource type",
            )  # fmt: skip
            return
        modified = response.get("lastModified")
        deleted_at = utc_instant(modified)
        if modified is not None and deleted_at is None:
            self.reject(
                number, canonical, "invalid_date", f"{path}.response.lastModified",
                "is not a FHIR instant", rtype, rid,
            )  # fmt: skip
            return
        if deleted_at is not None:
            basis = "entry"
        elif bundle_time is not None:
            deleted_at, basis = bundle_time, "bundle"
        else:
            deleted_at, basis = self.fallback, self.basis
        etag = response.get("etag")
        version = _ETAG_RE.match(etag) if isinstance(etag, str) else None
        self.out.deletions.append(
            {
                "ordinal": len(self.out.deletions),
                "resource_type": rtype,
                "resource_id": rid,
                "deleted_at": deleted_at,
                "deleted_at_basis": basis,
                "version_id": version.group("version") if version else None,
                "source": self.source.label,
                "line_number": number,
                "entry_index": index,
                "entry": canonical.decode(),
                "entry_sha256": hashlib.sha256(canonical).hexdigest(),
            }
        )


_DELETION_SCHEMA = pa.schema(
    [
        ("ordinal", pa.int64()),
        ("resource_type", pa.string()),
        ("resource_id", pa.string()),
        ("deleted_at", pa.timestamp("us", tz="UTC")),
        ("deleted_at_basis", pa.string()),
        ("version_id", pa.string()),
        ("source", pa.string()),
        ("line_number", pa.int64()),
        ("entry_index", pa.int64()),
        ("entry", pa.string()),
        ("entry_sha256", pa.string()),
    ]
)
# The landing's quarantine rows plus the file they came from (one deletion file per batch).
_QUARANTINE_SCHEMA = QUARANTINE_SCHEMA.append(pa.field("source", pa.string()))


def land_deletions(
    con: duckdb.DuckDBPyConnection,
    site_id: str,
    files: Iterable[DeletionFile],
    *,
    load_id: str,
    reread: bool = False,
) -> DeletionResult:
    """Land a site's deletion files in one transaction; a file already landed (same label and
    sha256, ops.landed_files) is not read again unless `reread`."""
    result = DeletionResult()
    now = dt.datetime.now(dt.UTC)
    todo: list[tuple[DeletionFile, str]] = []
    for source in files:
        sha = source.sha256 or file_sha256(source.path)
        seen = con.execute(
            "SELECT 1 FROM ops.landed_files WHERE site_id = ? AND source = ? AND file_sha256 = ?",
            [site_id, source.label, sha],
        ).fetchall()
        if seen and not reread:
            result.files_unchanged += 1
        else:
            todo.append((source, sha))
    if not todo:
        return result
    parsed = _Parsed()
    lines: list[int] = []
    for source, _ in todo:
        reader = _Reader(site_id, source, now)
        one = reader.read()
        parsed.deletions += [{**d, "ordinal": len(parsed.deletions) + i} for i, d in
                             enumerate(one.deletions)]  # fmt: skip
        parsed.quarantine += one.quarantine
        lines.append(reader.lines)
    for d in parsed.deletions:
        result.counts.setdefault(d["resource_type"], DeletionCounts()).received += 1
    for q in parsed.quarantine:
        c = result.counts.setdefault(q["resource_type"], DeletionCounts())
        c.received += 1
        c.quarantined += 1
        result.reasons[q["reason"]] += 1
    params = {"site": site_id, "load": load_id, "now": now}
    with transaction(con):
        if parsed.deletions:
            table = pa.Table.from_pylist(parsed.deletions, schema=_DELETION_SCHEMA)
            con.register("landing_deletions", table)
            added = Counter(r[0] for r in con.execute(_INSERT_DELETIONS, params).fetchall())
            con.unregister("landing_deletions")
            for rtype, n in added.items():
                result.counts[rtype].recorded = n
        if parsed.quarantine:
            table = pa.Table.from_pylist(parsed.quarantine, schema=_QUARANTINE_SCHEMA)
            con.register("landing_deletion_quarantine", table)
            con.execute(_INSERT_QUARANTINE, params)
            con.unregister("landing_deletion_quarantine")
        for rtype, c in result.counts.items():
            con.execute(
                _UPSERT_COUNTS,
                {**params, "type": rtype, "received": c.received, "recorded": c.recorded,
                 "quarantined": c.quarantined},
            )  # fmt: skip
        for (source, sha), count in zip(todo, lines, strict=True):
            con.execute(
                "INSERT INTO ops.landed_files VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [site_id, source.label, sha, source.path.stat().st_size, count, load_id, now],
            )
    result.files_read = len(todo)
    total = result.total()
    if total.received:
        log.info(
            "site %s: %d deletion(s) received, %d new, %d quarantined",
            site_id,
            total.received,
            total.recorded,
            total.quarantined,
        )
    return result
