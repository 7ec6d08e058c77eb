"""Fetched files hold patient data: private while a load runs, gone once it has landed (or
failed), kept only as long as a site asks."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from rescue_pipeline.extract.ndjson import SourceError
from rescue_pipeline.extract.staging import prune, staging_folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_load_folder_is_private_and_removed_once_landed(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with staging_folder(tmp_path, "site-a", "L1", keep_days=0) as folder:
            (folder / "Patient.ndjson").write_bytes(b"{}\n")
            assert _mode(folder) == 0o700
            assert _mode(tmp_path / "extract") == _mode(tmp_path / "extract" / "site-a") == 0o700
    finally:
        os.umask(old)
    assert not folder.exists()


def test_a_failed_load_leaves_nothing_and_a_kept_one_has_private_files(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with staging_folder(tmp_path, "site-a", "L1", keep_days=3) as failed:
            (failed / "Patient.ndjson").write_bytes(b"{}\n")
            raise RuntimeError("the landing failed")
    assert not failed.exists()  # the next load fetches it again
    with staging_folder(tmp_path, "site-a", "L2", keep_days=3) as kept:
        (kept / "Patient.ndjson").write_bytes(b"{}\n")
    assert _mode(kept / "Patient.ndjson") == 0o600 and _mode(kept) == 0o700


OLD, RECENT, NEW = (f"20261{n}01T000000000000Z-site-a" for n in (0, 1, 2))


def test_a_load_start_prunes_what_is_past_its_keep(tmp_path: Path) -> None:
    site = tmp_path / "extract" / "site-a"
    (site / OLD).mkdir(parents=True)
    (site / RECENT).mkdir()
    (site / "notes").mkdir()  # not a load's folder: never ours to remove
    (site / OLD / "x.ndjson").write_bytes(b"PHI")
    week_ago = time.time() - 7 * 86400
    os.utime(site / OLD, (week_ago, week_ago))
    assert prune(site, keep_days=3) == 1
    assert sorted(p.name for p in site.iterdir()) == [RECENT, "notes"]
    with staging_folder(tmp_path, "site-a", NEW, keep_days=0):  # 0: keep no load's files
        assert sorted(p.name for p in site.iterdir()) == [NEW, "notes"]


def test_a_symlinked_site_folder_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "shared" / "site-a"
    (target / RECENT).mkdir(parents=True)
    target.chmod(0o755)
    (tmp_path / "wh" / "extract").mkdir(parents=True)
    (tmp_path / "wh" / "extract" / "site-a").symlink_to(target)
    with pytest.raises(SourceError, match=r"^site site-a: .* is not a folder of this user's own"):
        with staging_folder(tmp_path / "wh", "site-a", NEW, keep_days=0):
            pass
    assert (target / RECENT).is_dir() and _mode(target) == 0o755
