"""One NDJSON line → an accepted version (payload + sha256) or a quarantine reason.

The payload is the resource as compact JSON in the order it was sent, and its sha256 names the
version (whitespace makes no new version; a server that reorders keys does). orjson reads
numbers as doubles, so a line writing `1.50`, a 28-digit decimal or a 30-digit integer (or
with spaces) is not its payload byte for byte: such a line is also kept exactly as received,
the original record an audit asks for. Most servers write compact JSON, so most lines are their
payload and are stored once.

This is the landing's hot loop: orjson for parsing and serialisation, hashlib for the digest,
and the structural checks of structure.py. Nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from rescue_pipeline.fhir_types import r4_resource_types
from rescue_pipeline.raw.fast_check import passes
from rescue_pipeline.raw.structure import ID_RE, check_resource

_R4_TYPES = r4_resource_types()
_BOM = b"\xef\xbb\xbf"


class Accepted(NamedTuple):
    """An accepted line (a tuple: the hot loop makes one per line)."""

    resource_type: str
    resource_id: str
    version_id: str | None
    last_updated: str | None
    payload: bytes  # compact JSON in the order sent, UTF-8
    payload_sha256: str
    as_received: bytes | None  # the line itself when it is not byte for byte the payload


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    element: str | None
    detail: str
    resource_type: str | None
    resource_id: str | None


class _RepeatedKey(Exception):
    pass


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = {k for k, _ in pairs}
    if len(keys) != len(pairs):
        raise _RepeatedKey
    return dict(pairs)


def _repeats_a_key(line: bytes) -> bool:
    """Whether some object of the line has a key twice (orjson keeps the last value silently).

    Only lines that are not byte for byte their payload get here (a repeated key always makes
    the payload differ), so the slower exact check runs on few lines.
    """
    try:
        json.loads(line, object_pairs_hook=_no_repeats)
    except _RepeatedKey:
        return True
    except (ValueError, RecursionError):
        return False  # orjson read it: json's own limits decide nothing here
    return False


def _utf8_problem(line: bytes) -> str | None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 byte 0x{line[exc.start]:02x} at byte offset {exc.start}"
    return None


def classify(line: bytes, *, first_line: bool = False) -> Accepted | Rejected:
    """Decide one line (without its line end)."""
    if first_line and line.startswith(_BOM):
        line = line[len(_BOM) :]
    if not line or (line[:1].isspace() and not line.strip()):
        return Rejected("empty_line", None, "empty line", None, None)
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        utf8 = _utf8_problem(line)
        if utf8:
            return Rejected("invalid_utf8", None, utf8, None, None)
        return Rejected("not_json", None, f"not valid JSON: {exc}", None, None)
    if not isinstance(resource, dict):
        kind = type(resource).__name__
        return Rejected("not_an_object", None, f"JSON {kind}, not an object", None, None)
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return Rejected(
            "missing_resource_type", "resourceType", "resourceType is missing", None, None
        )
    if rtype not in _R4_TYPES:
        return Rejected(
            "unknown_resource_type",
            "resourceType",
            "resourceType is not a FHIR R4 resource type",
            None,
            None,
        )
    rid = resource.get("id")
    if not isinstance(rid, str) or ID_RE.fullmatch(rid) is None:
        what = "missing" if rid is None else "not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)"
        return Rejected("invalid_id", "id", f"{rtype}.id is {what}", rtype, None)
    if not passes(line, rtype):
        # The fast path is stricter than the rules (e.g. partial dates): the checker decides,
        # and names the element and the reason.
        problem = check_resource(resource, rtype)
        if problem is not None:
            detail = f"{rtype}.{problem.detail}"
            return Rejected(problem.reason, problem.element, detail, rtype, rid)
    meta = resource.get("meta")
    version_id = last_updated = None
    if meta:
        version_id = meta.get("versionId")
        last_updated = meta.get("lastUpdated")
    try:
        payload = orjson.dumps(resource)
    except orjson.JSONEncodeError:
        # orjson writes at most 254 levels: deeper is no FHIR resource, and quarantined here
        # rather than failing the whole load
        return Rejected("too_deep", None, f"{rtype}: nested deeper than 254 levels", rtype, rid)
    as_received = None if payload == line else line
    if as_received is not None and _repeats_a_key(line):  # only lines unlike their payload
        return Rejected(
            "duplicate_key",
            None,
            f"{rtype}: a JSON object repeats a key (one of its values would be lost)",
            rtype,
            rid,
        )
    return Accepted(
        rtype,
        rid,
        version_id,
        last_updated,
        payload,
        hashlib.sha256(payload).hexdigest(),
        as_received,
    )
