"""One writer at a time, and a load killed at any point leaves the published warehouse as it
was; the next run repairs the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.cli import main
from rescue_pipeline.warehouse.lock import WarehouseBusy, holder, writer_lock
from rescue_pipeline.warehouse.publish import next_path

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

RESCUE = str(Path(sys.executable).parent / "rescue")
ENV = {**os.environ, "RESCUE_PSEUDONYM_KEY": "writer-safety-key-0123456789"}


def test_a_second_writer_is_refused_naming_the_one_running(tmp_path: Path) -> None:
    work = tmp_path / "rescue.work.duckdb"
    with writer_lock(work, command="rescue run --full"):
        with pytest.raises(WarehouseBusy, match=r"being written by rescue run --full \(pid \d+"):
            with writer_lock(work, command="rescue run"):
                pass
    with writer_lock(work, command="rescue run"):  # released when the first ended
        assert holder(work) is not None and "rescue run (pid" in (holder(work) or "")
    assert holder(work) is None  # a finished writer's note names no one


def test_the_next_run_closes_a_load_a_killed_process_left_running(
    published: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RESCUE_PSEUDONYM_KEY", ENV["RESCUE_PSEUDONYM_KEY"])
    root = _copy(published, tmp_path)
    work = root / "warehouse" / "rescue.work.duckdb"
    with duckdb.connect(str(work)) as con:  # what a SIGKILL mid-landing leaves behind
        con.execute(
            "INSERT INTO ops.runs VALUES ('site-a-killed', 'site-a', 'ndjson', now(), NULL, "
            "'running', NULL, NULL, NULL, false)"
        )
    # before any run closes it, status calls it killed (no process holds the writer lock)
    assert main(["status", "--config", str(root / "sites.yaml")]) == 5
    assert "ATTENTION site-a: last load killed" in capsys.readouterr().out
    assert main(["run", "--config", str(root / "sites.yaml")]) == 0
    assert "(closed 1 load(s) a killed run left open" in capsys.readouterr().out
    with duckdb.connect(str(work), read_only=True) as con:
        assert con.execute(
            "SELECT status, finished_at IS NOT NULL, message FROM ops.runs "
            "WHERE load_id = 'site-a-killed'"
        ).fetchall() == [
            (
                "interrupted",
                True,
                "the process ended before the landing committed; nothing of it was kept, "
                "the next load fetches it again",
            )
        ]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cohort run once (published), to be copied by each test."""
    root = tmp_path_factory.mktemp("safety")
    subprocess.run(
        [RESCUE, "synth", "--patients", "600", "--sites", "3", "--seed", "5", "--out", str(root)],
        check=True, capture_output=True, env=ENV,
    )  # fmt: skip
    done = subprocess.run(
        [RESCUE, "run", "--config", str(root / "sites.yaml")], capture_output=True, text=True,
        env=ENV, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root


def _copy(source: Path, tmp_path: Path) -> Path:
    """A copy of the published cohort whose next run rebuilds everything (as after a rule
    change): without its last publish on record, a run with nothing new would rebuild nothing."""
    import shutil

    shutil.copytree(source, tmp_path / "c")
    with duckdb.connect(str(tmp_path / "c" / "warehouse" / "rescue.work.duckdb")) as con:
        con.execute("DELETE FROM ops.derivations")
    return tmp_path / "c"


def _start(root: Path, *, full: bool = True) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [RESCUE, "run", *(["--full"] if full else []), "--config", str(root / "sites.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip


def _wait_for_line(process: subprocess.Popen[str], text: str) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        if text in line:
            return
    pytest.fail(f"the load ended before printing {text!r}")


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["landing", "normalisation", "publish"])
def test_a_load_killed_at_any_point_leaves_the_published_warehouse_as_it_was(
    published: Path,
    tmp_path: Path,
    moment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RESCUE_PSEUDONYM_KEY", ENV["RESCUE_PSEUDONYM_KEY"])
    root = _copy(published, tmp_path)
    warehouse = root / "warehouse" / "rescue.duckdb"
    before = warehouse.read_bytes()
    process = _start(root)
    try:
        if moment == "landing":
            _wait_for_line(process, "landing site-a")  # site-a done: site-b is landing now
        elif moment == "normalisation":
            _wait_for_line(process, "landing site-c")
            time.sleep(0.3)  # inside the core build
        else:
            deadline = time.monotonic() + 120
            while not next_path(warehouse).exists():
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.005)
        if moment != "landing":  # (a landing is killed at once, before it can finish)
            # the second writer is refused while it runs, naming it
            code = main(["run", "--config", str(root / "sites.yaml")])
            assert code == 4
            assert "being written by rescue run --full (pid" in capsys.readouterr().err
        assert process.poll() is None, "the load finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert warehouse.read_bytes() == before  # readers saw nothing of the killed load
    code = main(["run", "--config", str(root / "sites.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    assert not next_path(warehouse).exists()
    with duckdb.connect(str(root / "warehouse" / "rescue.work.duckdb"), read_only=True) as con:
        statuses = dict(con.execute("SELECT status, count(*) FROM ops.runs GROUP BY 1").fetchall())
        versions = con.execute(
            "SELECT count(*), count(DISTINCT (site_id, resource_type, resource_id, payload_sha256))"
            " FROM raw.fhir_resource_versions"
        ).fetchall()[0]
    assert "running" not in statuses
    # a load killed inside its landing is closed by the next run (killed between two site
    # loads, there is none open)
    assert statuses.get("interrupted", 0) <= 1
    assert ("closed 1 load(s)" in out) == (statuses.get("interrupted") == 1)
    assert versions[0] == versions[1]  # nothing landed twice
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM core.subjects").fetchall()[0][0] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("moment", "stop"),
    [
        ("landing", signal.SIGTERM),
        ("between_sites", signal.SIGTERM),
        ("normalisation", signal.SIGTERM),
        ("between_sites", signal.SIGINT),
    ],
)
def test_a_stop_signal_ends_the_run_cleanly_and_publishes_nothing(
    published: Path, tmp_path: Path, moment: str, stop: signal.Signals
) -> None:
    """A scheduler's stop (SIGTERM) or Ctrl-C: the step in progress rolls back, its record
    says so, the error names the signal, nothing after it runs; exit 1 (130 for Ctrl-C)."""
    root = _copy(published, tmp_path)
    warehouse = root / "warehouse" / "rescue.duckdb"
    before = warehouse.read_bytes()
    # --full: the landings run first, then Dagster runs the rest; without it every step is
    # a Dagster run, and a signal between two of them must stop the sites after it too
    process = _start(root, full=moment != "between_sites")
    try:
        if moment == "landing":
            work = root / "warehouse" / "rescue.work.duckdb"
            deadline = time.monotonic() + 60
            while holder(work) is None:  # the run has its writer lock: the reload starts
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(0.3)  # inside the first site's full reload
        elif moment == "between_sites":
            _wait_for_line(process, "landing site-a")
            time.sleep(0.02)  # site-a's run has ended; site-b's is starting
        else:
            _wait_for_line(process, "landing site-c")
            time.sleep(0.3)  # inside the core build
        assert process.poll() is None, "the run finished before it could be stopped"
        os.kill(process.pid, stop)
        _out, err = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == (130 if stop == signal.SIGINT else 1), err
    assert "Traceback" not in err
    assert f"error: stopped by signal {stop.name}" in err, err
    assert err.rstrip().endswith("nothing was published"), err
    assert warehouse.read_bytes() == before  # nothing of the stopped run was published
    with duckdb.connect(str(root / "warehouse" / "rescue.work.duckdb"), read_only=True) as con:
        runs = con.execute("SELECT site_id, status, message FROM ops.runs").fetchall()
    assert "running" not in {status for _, status, _ in runs}  # every load has its record
    stopped = [message for _, status, message in runs if status == "stopped"]
    assert all("rolled back" in m or "had committed" in m for m in stopped)
    if "ops.runs: stopped" in err:  # the signal met a landing: its record says so
        assert len(stopped) == 1
    if moment == "between_sites":  # nothing after the stop ran: site-c has only its first load
        assert len([r for r in runs if r[0] == "site-c"]) == 1
