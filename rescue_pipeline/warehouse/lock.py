"""One writer at a time: a lock file beside the working database.

DuckDB already refuses a second writer, but only with "Could not set lock on file"; data
engineers need to know which load holds it and since when. `rescue run` (and the demo) hold an
flock on `<work>.lock` for their whole run and write who they are into it. The kernel drops an
flock when its process ends, however it ends (SIGKILL included), so a dead load never leaves
the warehouse locked; its stale description is simply overwritten by the next writer.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WarehouseBusy(RuntimeError):
    """Another process holds the working database (exit code 4)."""


def lock_path(work_db: Path) -> Path:
    return work_db.with_name(work_db.name + ".lock")


def holder(work_db: Path) -> str | None:
    """Who holds the writer lock now, in words; None when no one does (what the file says is
    then a finished writer's, and not the reason the database is busy)."""
    try:
        with lock_path(work_db).open("r", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                info = json.loads(handle.read() or "null")  # held: the holder wrote this
            else:
                return None  # no writer holds it
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    return (
        f"{info.get('command', 'a load')} (pid {info.get('pid')} on {info.get('host')}, "
        f"started {info.get('started_at')})"
    )


@contextmanager
def writer_lock(work_db: Path, *, command: str) -> Iterator[None]:
    """Hold the writer lock for the block, or raise WarehouseBusy naming the holder."""
    path = lock_path(work_db)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(work_db) or "another process"
            raise WarehouseBusy(
                f"{work_db} is being written by {who}; try again when it finishes"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "command": command,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                }
            )
        )
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock
