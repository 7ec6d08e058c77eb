"""A full disk is said as such, naming the folder to free, and the load's record says so.

Two real faults: the working database's write-ahead log pointed at /dev/full (every write gets
ENOSPC from the kernel, so even the load's record cannot be written), and, where this machine
lets us mount one, a small tmpfs that fills up part-way through a landing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.cli import main
from rescue_pipeline.config import load_config
from rescue_pipeline.site_load import SiteLoadError, load_site
from rescue_pipeline.warehouse.database import open_work_db
from tests.conftest import obs

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)


def _config(write_site: Callable[..., Path], write_config: Callable[..., Path], warehouse: Path,
            lines: int) -> Path:  # fmt: skip
    folder = write_site(
        "site-a", {"Observation": [obs(f"o{i}", value=float(i)) for i in range(lines)]}
    )
    return write_config(
        {
            "study_id": "RESCUE",
            "warehouse": str(warehouse / "rescue.duckdb"),
            "sites": [{"id": "site-a", "source": {"kind": "ndjson", "path": str(folder)}}],
        }
    )


def test_a_full_disk_before_anything_is_written_says_where(
    tmp_path: Path, write_site, write_config, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "wh"
    path = _config(write_site, write_config, warehouse, 5)
    open_work_db(warehouse / "rescue.work.duckdb").close()
    (warehouse / "rescue.work.duckdb.wal").symlink_to("/dev/full")
    config = load_config(path)
    with pytest.raises(SiteLoadError) as err:
        load_site(config, config.site("site-a"))
    assert str(err.value) == (
        f"site site-a: no space left on {warehouse} (writing rescue.work.duckdb.wal); "
        "the load's record could not be written (`rescue status` shows what landed)"
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs, when this machine lets us mount one (root, no container restrictions)."""
    mount = shutil.which("mount")
    point = tmp_path / f"small-{uuid.uuid4().hex[:8]}"
    point.mkdir()
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(point)],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("this machine does not let us mount a tmpfs")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)  # lazily: DuckDB may hold it


def test_a_disk_that_fills_during_a_landing_fails_the_site_naming_the_folder(
    tmp_path: Path, small_disk: Path, write_site, write_config,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = _config(write_site, write_config, small_disk, 20_000)  # ~10 MB of versions
    env = {**os.environ, "RESCUE_PSEUDONYM_KEY": "disk-full-key-0123456789"}
    rescue = str(Path(sys.executable).parent / "rescue")
    done = subprocess.run([rescue, "run", "--config", str(path)], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip
    assert done.returncode == 1, done.stderr
    expected = f"site site-a: no space left on {small_disk} (writing rescue.work.duckdb"
    assert f"error: {expected}" in done.stderr and "TransactionContext" not in done.stderr
    with duckdb.connect(str(small_disk / "rescue.work.duckdb"), read_only=True) as con:
        [(status, message)] = con.execute("SELECT status, message FROM ops.runs").fetchall()
        assert con.execute("SELECT count(*) FROM raw.fhir_resource_versions").fetchall() == [(0,)]
    assert status == "failed" and message.startswith(expected)
    assert main(["status", "--config", str(path)]) == 5
    assert "ATTENTION site-a: last load failed: site site-a: no space left on" in (
        capsys.readouterr().out
    )
