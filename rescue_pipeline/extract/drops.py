"""NDJSON drops: exports a site delivers into a watched folder, each a Bulk Data folder.

A drop is a folder holding `manifest.json`: the watched folder itself, or one of its immediate
subfolders (one per delivery, e.g. `2026-11-24/`). Sites write the manifest last, so a drop is
complete once its manifest parses and every file it names is there; until then it is left for
the next look. A drop is known by its folder and the sha256 of its manifest, so the same
delivery is seen once, and a folder re-delivered with a new manifest (a new `transactionTime`)
is a new drop. The deletion files the manifest's `deleted` list names (in `deleted/`, or beside
the manifest) must be there too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from rescue_pipeline.extract.ndjson import DELETED

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Drop:
    folder: Path
    name: str  # relative to the watched folder; "." for the folder itself
    key: str  # name@first 16 hex digits of the manifest's sha256
    missing: tuple[str, ...] = ()  # files the manifest names that are not there (yet)
    unreadable: bool = False  # the manifest does not parse (still being written?)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unreadable


def find_drops(watched: Path) -> list[Drop]:
    """Every folder with a manifest in `watched` (itself and its subfolders), sorted by name."""
    if not watched.is_dir():
        return []
    candidates = [watched, *sorted(p for p in watched.iterdir() if p.is_dir())]
    drops = []
    for folder in candidates:
        manifest = folder / MANIFEST
        if not manifest.is_file():
            continue
        name = "." if folder == watched else folder.name
        drops.append(_drop(folder, name, manifest.read_bytes()))
    return drops


def _drop(folder: Path, name: str, manifest: bytes) -> Drop:
    key = f"{name}@{hashlib.sha256(manifest).hexdigest()[:16]}"
    try:
        data = orjson.loads(manifest)
        urls = [str(entry["url"]) for entry in data["output"]]
        deleted = [str(entry["url"]) for entry in data.get("deleted") or ()]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return Drop(folder, name, key, unreadable=True)
    missing = tuple(url for url in urls if not (folder / url.rsplit("/", 1)[-1]).is_file())
    missing += tuple(
        url
        for url in deleted
        if not any(
            (where / url.rsplit("/", 1)[-1]).is_file() for where in (folder / DELETED, folder)
        )
    )
    return Drop(folder, name, key, missing=missing)
