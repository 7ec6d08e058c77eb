"""A full disk, said as such: "no space left on <folder> (writing <file>)".

DuckDB reports a full disk as a transaction or I/O error whose text ends in the system's
"No space left on device"; Python as an OSError with errno ENOSPC. Either way the user needs the
folder to free, not the name of the layer that noticed. The paths are ours (warehouse, spill,
staging), never data.
"""

from __future__ import annotations

import errno
import os
import re

from rescue_pipeline.exception_chain import exception_chain

_ENOSPC_TEXT = "No space left on device"
_FILE = re.compile(r'file "([^"]+)"')


def no_space_text(text: str) -> str | None:
    """The message for an error text that reports a full disk, else None."""
    if _ENOSPC_TEXT not in text:
        return None
    found = _FILE.search(text)
    return _where(found.group(1) if found else None)


def no_space(exc: BaseException) -> str | None:
    """The message when exc, or what caused it, is a full disk, else None."""
    for error in exception_chain(exc):
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            filename = error.filename
            return _where(os.fsdecode(filename) if filename is not None else None)
        message = no_space_text(str(error))
        if message:
            return message
    return None


def _where(path: str | None) -> str:
    if not path:
        return "no space left on the disk"
    folder, name = os.path.split(path)
    return f"no space left on {folder or '.'} (writing {name})"
