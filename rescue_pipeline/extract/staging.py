"""The folder a load fetches a live site into (`<warehouse dir>/extract/<site>/<load>/`).

What a server sends is patient data, so the folders are private to the pipeline's user (0700,
files 0600) and short-lived: a load's folder is removed once its landing has committed (or has
failed: the next load fetches it again), unless the site keeps it `keep_extract_days` days for
inspection; a load's start removes what a killed process or an expired keep left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rescue_pipeline.extract.ndjson import SourceError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


# the folders a load makes: load ids are <UTC time>-<site id> (raw.landing.new_load_id)
_LOAD_FOLDER = re.compile(r"\d{8}T\d{12}Z-[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def _private_dir(path: Path, site_id: str) -> None:
    """Make or check one of our folders: a real folder of ours, never a symlink (chmod and the
    cleanup would follow it to somewhere else), then 0700."""
    path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise SourceError(
            f"site {site_id}: {path} is not a folder of this user's own (a symlink or another "
            "user's); refusing to write patient data there"
        )
    if stat.S_IMODE(info.st_mode) != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)


@contextmanager
def staging_folder(work_dir: Path, site_id: str, load_id: str, *, keep_days: int) -> Iterator[Path]:
    """The load's private folder; afterwards removed, or kept `keep_days` with private files."""
    site_dir = work_dir / "extract" / site_id
    work_dir.mkdir(parents=True, exist_ok=True)
    for folder in (work_dir / "extract", site_dir):
        _private_dir(folder, site_id)
    prune(site_dir, keep_days=keep_days)
    folder = site_dir / load_id
    _private_dir(folder, site_id)
    landed = False
    try:
        yield folder
        landed = True
    finally:
        if keep_days > 0 and landed:
            for path in folder.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    os.chmod(path, PRIVATE_FILE)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def prune(site_dir: Path, *, keep_days: int, now: float | None = None) -> int:
    """Remove the site's load folders older than keep_days (all, with 0); returns how many.
    Only folders named as loads are, and never through a symlink."""
    cutoff = (time.time() if now is None else now) - keep_days * 86400
    removed = 0
    for folder in site_dir.iterdir():
        if not _LOAD_FOLDER.match(folder.name) or folder.is_symlink() or not folder.is_dir():
            continue
        if keep_days == 0 or folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
