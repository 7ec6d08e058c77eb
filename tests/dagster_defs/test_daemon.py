"""The production instance for real: dagster_home/dagster.postgres.yaml on a PostgreSQL server,
and `dagster-daemon run` firing a site's schedule (every minute here) and another site's drop
sensor; both loads, and the replay that follows a load, complete against that instance. Runs
still in flight when it stops (the next minute's tick, a second replay) are ended with it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from rescue_pipeline.config import load_config
from tests.dagster_defs.conftest import KEY, add_drop
from tests.postgres import Postgres, run_postgres

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 150  # a minute for the cron tick at most, then the runs


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    yield from run_postgres()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the daemon's own process group (the daemon, its code server, the run workers
    and their step processes), then SIGKILL to whatever is left after 20 s."""
    group = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    proc.wait(10)


@pytest.mark.slow
@pytest.mark.integration
def test_the_daemon_fires_a_schedule_and_a_sensor_on_postgres(
    postgres: Postgres,
    cohort: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    incoming = tmp_path / "incoming"
    (incoming / "site-a").mkdir(parents=True)
    (incoming / "site-b").mkdir()
    path = cohort(
        orchestration={"automation": "running", "sensor_interval_seconds": 2, "retries": 0},
        site_settings={
            "site-a": {
                "schedule": "* * * * *",
                "timezone": "UTC",
                "watch": str(incoming / "site-a"),
            },
            "site-b": {"watch": str(incoming / "site-b")},
        },
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.postgres.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        **postgres.env(),
        "DAGSTER_HOME": str(home),
        "RESCUE_CONFIG": str(path),
        "RESCUE_PSEUDONYM_KEY": KEY,
    }
    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"

    daemon = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-daemon"),
            "run",
            "-w",
            str(ROOT / "workspace.yaml"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "daemon.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(3)
        drop = add_drop(path.parent / "site-b", incoming / "site-b", "2026-11-25")  # the sensor's
        deadline = time.monotonic() + DEADLINE_SECONDS
        scheduled = dropped = published = None
        while time.monotonic() < deadline and published is None:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            records = instance.get_run_records()
            for record in records:
                assert record.dagster_run.status != dg.DagsterRunStatus.FAILURE, _explain(
                    instance, record.dagster_run
                )
            scheduled = _first(records, "dagster/schedule_name", "nightly_site_a")
            dropped = _first(records, "dagster/sensor_name", "drops_site_b")
            loads_done = all(
                r is not None and r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
                for r in (scheduled, dropped)
            )
            replayed = [
                r
                for r in records
                if r.dagster_run.job_name == "replay"
                and r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            ]
            if loads_done and replayed:
                published = replayed[-1]
                break
            time.sleep(2)
        if published is None:
            statuses = [
                (r.job_name, r.tags.get("rescue/site"), r.status.value) for r in instance.get_runs()
            ]
            pytest.fail(
                f"runs not complete in {DEADLINE_SECONDS} s: {statuses}\n"
                + (tmp_path / "daemon.log").read_text()[-3000:]
            )
    finally:
        _stop(daemon)

    assert scheduled is not None and dropped is not None
    assert scheduled.dagster_run.status == dropped.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert scheduled.dagster_run.tags["dagster/partition"] == "site-a"
    assert dropped.dagster_run.tags["dagster/partition"] == "site-b"
    assert dropped.dagster_run.tags["rescue/drop"] == drop.name
    assert published is not None
    assert published.dagster_run.tags["rescue/trigger"] == "after-load"
    config = load_config(path)
    with duckdb.connect(str(config.work_db), read_only=True) as con:
        landed = {r[0] for r in con.execute("SELECT DISTINCT site_id FROM raw.loads").fetchall()}
    assert landed == {"site-a", "site-b"}
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        published_sites = {
            r[0] for r in con.execute("SELECT DISTINCT site_id FROM core.subjects").fetchall()
        }
    assert "site-b" in published_sites  # the replay after the drop's load published it


def _first(records: list[dg.RunRecord], tag: str, value: str) -> dg.RunRecord | None:
    """The earliest run whose tag has this value (the records come newest first)."""
    matching = [r for r in records if r.dagster_run.tags.get(tag) == value]
    return matching[-1] if matching else None


def _explain(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    failures = [
        e.dagster_event.message or ""
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    return f"{run.job_name} {run.tags.get('rescue/site')} failed: {failures}"
