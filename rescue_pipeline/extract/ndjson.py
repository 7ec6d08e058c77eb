"""The NDJSON folder source: a site's Bulk Data layout on disk (or a downloaded export).

It only finds the files and what type each holds; landing reads them. A manifest.json, when
present, names the files; files beside it that the manifest does not name are landed too
(nothing received is ignored), and a file the manifest names but that is missing is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import orjson

_NAME_RE = re.compile(r"^([A-Z][A-Za-z]+)(?:[._-][^/]*)?\.ndjson$")


class SourceError(RuntimeError):
    """A site's source cannot be read at all: the site's load fails, other sites go on."""


@dataclass(frozen=True)
class SourceFile:
    resource_type: str  # declared by the manifest or the file name
    path: Path
    label: str  # how quarantine and lineage name it: relative to the site folder (or its URL)
    sha256: str | None = None  # of the whole file, when the source hashed it as it wrote it


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
