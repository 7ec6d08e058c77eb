"""The NDJSON folder source: a site's Bulk Data layout on disk (or a downloaded export).

It only finds the files and what type each holds; landing reads them. A manifest.json, when
present, names the files; files beside it that the manifest does not name are landed too
(nothing received is ignored), and a file the manifest names but that is missing is an error.

Deletions sit in a `deleted/` sub-folder, as a Bulk export written to disk holds them: NDJSON
files of Bundles whose entries are DELETE requests (the manifest's `deleted` list may name them
too). A deletion without a timestamp of its own is dated by the manifest's transactionTime, else
by the file's modification time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import orjson

from rescue_pipeline.instants import utc_instant

_NAME_RE = re.compile(r"([A-Z][A-Za-z]+)(?:[._-][^/]*)?\.ndjson\Z")


class SourceError(RuntimeError):
    """A site's source cannot be read at all: the site's load fails, other sites go on."""


@dataclass(frozen=True)
class SourceFile:
    resource_type: str  # declared by the manifest or the file name
    path: Path
    label: str  # how quarantine and lineage name it: relative to the site folder (or its URL)


@dataclass(frozen=True)
class DeletionFile:
    """A file of deletion Bundles (one a line, entries with request.method DELETE)."""

    path: Path
    label: str  # how raw.deletions and quarantine name it: relative to the site folder or URL
    sha256: str | None = None
    # The instant a deletion without a timestamp of its own (entry or Bundle) is taken to have
    # happened by, and where it comes from: export (transactionTime), file (mtime), received.
    default_time: dt.datetime | None = None
    default_basis: str = "received"


def discover(folder: Path, site_id: str) -> list[SourceFile]:
    if not folder.is_dir():
        raise SourceError(f"site {site_id}: source folder {folder} does not exist")
    named: dict[Path, str] = {}
    manifest = folder / "manifest.json"
    if manifest.exists():
        try:
            data = orjson.loads(manifest.read_bytes())
            outputs = data["output"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise SourceError(
                f"site {site_id}: {manifest}: not a Bulk Data manifest ({exc})"
            ) from None
        for entry in outputs:
            if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
                raise SourceError(f"site {site_id}: {manifest}: output entry without a url")
            path = (folder / entry["url"].rsplit("/", 1)[-1]).resolve()
            if not path.exists():
                raise SourceError(
                    f"site {site_id}: {manifest}: names {entry['url']!r}, which is missing"
                )
            named[path] = str(entry.get("type") or _type_from_name(path) or "Unknown")
    for path in sorted(folder.glob("*.ndjson")):
        resolved = path.resolve()
        if resolved not in named:
            named[resolved] = _type_from_name(path) or "Unknown"
    return [
        SourceFile(rtype, path, path.name)
        for path, rtype in sorted(named.items(), key=lambda x: x[0].name)
    ]


def _type_from_name(path: Path) -> str | None:
    m = _NAME_RE.match(path.name)
    return m.group(1) if m else None


DELETED = "deleted"


def discover_deletions(folder: Path, site_id: str) -> list[DeletionFile]:
    """The deletion files of a site folder: deleted/*.ndjson and those the manifest's `deleted`
    list names (in deleted/ or beside the manifest); a named file that is missing is an error."""
    paths: set[Path] = {p.resolve() for p in (folder / DELETED).glob("*.ndjson")}
    when: dt.datetime | None = None
    manifest = folder / "manifest.json"
    if manifest.exists():
        try:
            data = orjson.loads(manifest.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise SourceError(
                f"site {site_id}: {manifest}: not a Bulk Data manifest ({exc})"
            ) from None
        data = data if isinstance(data, dict) else {}
        when = utc_instant(data.get("transactionTime"))
        for entry in data.get("deleted") or ():
            url = entry.get("url") if isinstance(entry, dict) else None
            if not isinstance(url, str) or not url:
                raise SourceError(f"site {site_id}: {manifest}: deleted entry without a url")
            name = url.rsplit("/", 1)[-1]
            found = [p for p in (folder / DELETED / name, folder / name) if p.is_file()]
            if not found:
                raise SourceError(f"site {site_id}: {manifest}: names {url!r}, which is missing")
            paths.add(found[0].resolve())
    root = folder.resolve()
    return [
        DeletionFile(
            path,
            path.relative_to(root).as_posix(),
            default_time=when or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC),
            default_basis="export" if when else "file",
        )
        for path in sorted(paths)
    ]
