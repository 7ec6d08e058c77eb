"""File names inside a load folder, by construction.

A server's answer names the resource types it sends; those names reach file names only after
`fhir_types.is_r4_resource_type`, and `file_in` still refuses any name that would leave the
folder (a separator, `..`, an absolute path), so no answer can write outside it.
"""

from __future__ import annotations

import re
from pathlib import Path

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}\Z")


class UnsafeFileName(ValueError):
    """A name that would not stay a plain file inside its folder."""


def file_in(folder: Path, name: str) -> Path:
    """folder/name, refused unless name is one plain file name that resolves inside folder."""
    if _SAFE.match(name) is None or name in (".", ".."):
        raise UnsafeFileName("a file name from a server answer is not a plain file name")
    path = folder / name
    base = folder.resolve()
    if path.resolve().parent != base:
        raise UnsafeFileName("a file name from a server answer leaves its folder")
    return path
