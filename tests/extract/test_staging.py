"""Fetched files hold patient data: private while a load runs, gone once it has landed (or
failed), kept only as long as a site asks."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

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


def test_a_load_start_prunes_what_is_past_its_keep(tmp_path: Path) -> None:
    site = tmp_path / "extract" / "site-a"
    (site / "old").mkdir(parents=True)
    (site / "recent").mkdir()
    (site / "old" / "x.ndjson").write_bytes(b"PHI")
    week_ago = time.time() - 7 * 86400
    os.utime(site / "old", (week_ago, week_ago))
    assert prune(site, keep_days=3) == 1
    assert sorted(p.name for p in site.iterdir()) == ["recent"]
    with staging_folder(tmp_path, "site-a", "L3", keep_days=0):  # 0: keep nothing at all
        assert sorted(p.name for p in site.iterdir()) == ["L3"]
