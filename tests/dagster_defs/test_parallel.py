"""Site loads as separate runs at once, with the multiprocess executor, on a persistent instance
configured like dagster_home/dagster.yaml: one broken site fails alone, the others land, and the
steps that open the working database never overlap (pool rescue_warehouse, limit 1)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from rescue_pipeline.config import load_config
from rescue_pipeline.dagster_defs.keys import LOAD_OP, WAREHOUSE_POOL

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

ROOT = Path(__file__).resolve().parents[2]
POOL_STEPS = {LOAD_OP, "raw__version_validation"}

# One run of site_load for one site, as `dg.execute_job` runs it outside the daemon: the run in
# this process, each step in its own process (the definitions' multiprocess executor).
RUN_ONE_SITE = """
import sys
import dagster as dg
from rescue_pipeline.dagster_defs.definitions import reconstructable_job

home, config, site = sys.argv[1:]
instance = dg.DagsterInstance.from_config(home)
job = reconstructable_job(config, "site_load")
result = dg.execute_job(job, instance, tags={"dagster/partition": site, "rescue/site": site})
sys.exit(0 if result.success else 1)
"""


def _windows(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, float, float]]:
    """(step, start, end) of each pool step of a run, from its event log."""
    starts: dict[str, float] = {}
    out = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key not in POOL_STEPS:
            continue
        if event.event_type in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED):
            starts[event.step_key] = entry.timestamp
        elif event.event_type in (
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        ):
            out.append((event.step_key, starts[event.step_key], entry.timestamp))
    return out


@pytest.mark.slow
@pytest.mark.integration
def test_sites_run_in_parallel_one_failing_the_others_landing_one_writer_at_a_time(
    cohort: Callable[..., Path], tmp_path: Path
) -> None:
    path = cohort(sites=3, orchestration={"retries": 2, "retry_delay_seconds": 0.1})
    shutil.rmtree(path.parent / "site-c")  # site-c is broken: its folder is gone
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.event_log_storage.supports_global_concurrency_limits
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1

    sites = ["site-a", "site-b", "site-c"]
    procs = {
        site: subprocess.Popen(
            [sys.executable, "-c", RUN_ONE_SITE, str(home), str(path), site],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{site}.log").open("w"),
        )
        for site in sites
    }
    codes = {site: proc.wait(timeout=240) for site, proc in procs.items()}
    assert codes == {"site-a": 0, "site-b": 0, "site-c": 1}, codes

    runs = {r.tags["rescue/site"]: r for r in instance.get_runs()}
    assert runs["site-c"].status == dg.DagsterRunStatus.FAILURE
    failures = [
        e.dagster_event
        for e in instance.all_logs(runs["site-c"].run_id)
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    assert [f.step_key for f in failures] == [LOAD_OP]  # its validation never started
    assert not [
        e
        for e in instance.all_logs(runs["site-c"].run_id)
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]  # deterministic: one attempt

    config = load_config(path)
    with duckdb.connect(str(config.work_db), read_only=True) as con:
        landed = {r[0] for r in con.execute("SELECT DISTINCT site_id FROM raw.loads").fetchall()}
        failed = con.execute(
            "SELECT site_id, message FROM ops.runs WHERE status = 'failed'"
        ).fetchall()
    assert landed == {"site-a", "site-b"}
    assert [(s, m.split(":")[0]) for s, m in failed] == [("site-c", "site site-c")]

    # The runs were in flight together, yet no two steps held the working database at once.
    spans = {
        site: (run.start_time or 0.0, run.end_time or 0.0)
        for site, run in ((s, instance.get_run_record_by_id(runs[s].run_id)) for s in sites)
        if run is not None
    }
    assert any(
        spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
        for a in sites
        for b in sites
        if a < b
    ), spans
    windows = [
        (site, step, start, end)
        for site in sites
        for step, start, end in _windows(instance, runs[site].run_id)
    ]
    for i, (site_1, step_1, start_1, end_1) in enumerate(windows):
        for site_2, step_2, start_2, end_2 in windows[i + 1 :]:
            if site_1 != site_2:
                assert end_1 <= start_2 or end_2 <= start_1, (
                    f"{site_1}/{step_1} and {site_2}/{step_2} held {WAREHOUSE_POOL} together"
                )
