"""Spilled versions hold PHI: they are private to us, cleaned up after a killed load, and the
worker processes that write them do not outlive the landing process."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson

from rescue_pipeline.raw.chunks import Span, classify_span, private_spill, remove_stale_spills
from tests.conftest import obs


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_spilled_versions_are_private_to_the_landing_user(tmp_path: Path) -> None:
    data = tmp_path / "Observation.ndjson"
    data.write_bytes(b"".join(orjson.dumps(obs(f"o{i}")) + b"\n" for i in range(5)))
    old = os.umask(0o022)  # a usual umask would make files world-readable
    try:
        folder = Path(private_spill(str(tmp_path)))
        chunk = classify_span(
            Span(str(data), 0, data.stat().st_size, 1, "Observation"), str(folder)
        )
    finally:
        os.umask(old)
    assert chunk.versions_path is not None
    assert _mode(folder) == 0o700 and _mode(Path(chunk.versions_path)) == 0o600
    assert folder.name.startswith(f"rescue-landing-{os.getpid()}-")
    assert chunk.take_versions().num_rows == 5
    assert [p.name for p in folder.iterdir()] == [".lock"]  # read back and removed


def test_a_killed_process_spill_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    """In use is decided by a lock the landing process holds, not by its pid (pids are reused,
    and in containers every landing may be pid 1)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from rescue_pipeline.raw.chunks import private_spill\n"
         f"print(private_spill({str(tmp_path)!r}), flush=True)\ntime.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    other = Path(holder.stdout.readline().strip())  # another landing's, in use
    reused = tmp_path / f"rescue-landing-{os.getpid()}-x"  # a dead landing's, with our pid
    reused.mkdir()
    (reused / ".lock").write_bytes(b"")
    (reused / "x.arrow").write_bytes(b"PHI")
    legacy = tmp_path / "rescue-landing-0123abcd.arrow"  # an earlier version's loose file
    legacy.write_bytes(b"PHI")
    unrelated = tmp_path / "unrelated.arrow"
    unrelated.write_bytes(b"x")
    try:
        mine = Path(private_spill(str(tmp_path)))  # cleans up as it starts
        assert not reused.exists() and not legacy.exists()
        assert other.exists() and mine.exists() and unrelated.exists()
        holder.kill()
        holder.wait()
        assert remove_stale_spills(str(tmp_path)) == 1  # its lock died with it
        assert not other.exists() and mine.exists()
    finally:
        holder.kill()


def test_workers_end_when_the_landing_process_is_killed(tmp_path: Path) -> None:
    script = (
        "import os, sys, time\n"
        "from rescue_pipeline.raw.workers import pool\n"
        "pool = pool(2)\n"
        "list(pool.map(time.sleep, [0.1, 0.1]))\n"
        "print(' '.join(str(p) for p in pool._processes), flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        workers = [int(p) for p in process.stdout.readline().split()]
        assert len(workers) == 2 and all(_running(p) for p in workers)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while any(_running(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_running(p) for p in workers), "a worker outlived the landing process"
    finally:
        process.kill()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose (its parent died, init reaps it)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
