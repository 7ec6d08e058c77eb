"""A Bulk Data status answer read as a manifest: the completed export's files and the instant
(transactionTime) up to which it is complete; anything else is an error naming why.

`deleted` (Bulk Data Access IG 2.0) lists files of Bundles, one a line, whose entries name the
resources deleted on the server since `_since` (request.method DELETE, request.url Type/id).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from rescue_pipeline.extract.ndjson import SourceError
from rescue_pipeline.fhir_types import is_r4_resource_type

log = logging.getLogger(__name__)


class BulkError(SourceError):
    """The export cannot be completed or read: the site's load fails, its marks stay."""


@dataclass(frozen=True)
class ManifestFile:
    type: str
    url: str
    count: int | None


@dataclass(frozen=True)
class Manifest:
    transaction_time: dt.datetime
    requires_token: bool
    output: tuple[ManifestFile, ...]
    error: tuple[ManifestFile, ...]
    deleted: tuple[ManifestFile, ...] = ()


def parse_manifest(site_id: str, shown: str, body: bytes) -> Manifest:
    """The completed export's manifest, or BulkError saying why the answer is not one."""
    where = f"site {site_id}: GET {shown}: status answered 200 but"
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BulkError(f"{where} the body is not JSON (not a Bulk Data manifest)") from None
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        found = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        raise BulkError(f"{where} the body is not a Bulk Data manifest (no output list; {found!r})")
    when = data.get("transactionTime")
    try:
        transaction_time = dt.datetime.fromisoformat(when) if isinstance(when, str) else None
    except ValueError:
        transaction_time = None
    if transaction_time is None or transaction_time.tzinfo is None:
        raise BulkError(f"{where} the manifest has no transactionTime instant ({when!r})")
    return Manifest(
        transaction_time=transaction_time.astimezone(dt.UTC),
        requires_token=data.get("requiresAccessToken") is not False,
        output=_files(data["output"], where, "output", "Unknown"),
        error=_files(data.get("error") or [], where, "error", "OperationOutcome"),
        deleted=_files(data.get("deleted") or [], where, "deleted", "Bundle"),
    )


def _files(entries: Any, where: str, key: str, default_type: str) -> tuple[ManifestFile, ...]:
    """A manifest's output or error list; a file without a type is landed as the NDJSON folder
    source lands an unnamed file (each line's own resourceType decides)."""
    if not isinstance(entries, list):
        raise BulkError(f"{where} the manifest's {key} is not a list")
    files = []
    for entry in entries:
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url:
            raise BulkError(f"{where} a manifest {key} entry has no url")
        rtype = entry.get("type")
        count = entry.get("count")
        if rtype is not None and not is_r4_resource_type(rtype):
            # the server's type names a file: only an R4 type may; the lines still land and each
            # line's own resourceType decides (a wrong one is quarantined)
            log.warning("%s a manifest %s entry's type is not a FHIR R4 resource type", where, key)
            rtype = None
        files.append(
            ManifestFile(
                rtype if isinstance(rtype, str) and rtype else default_type,
                url,
                count if isinstance(count, int) and not isinstance(count, bool) else None,
            )
        )
    return tuple(files)
