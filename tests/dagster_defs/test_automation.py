"""Schedules, sensors, retries and jobs, evaluated with Dagster's own test APIs on real runs."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from rescue_pipeline.config import load_config
from rescue_pipeline.dagster_defs.definitions import build_definitions
from rescue_pipeline.dagster_defs.keys import (
    LOAD_OP,
    PUBLISHED,
    RAW_RESOURCES,
    RAW_VALIDATION,
    SITE_TAG,
)
from tests.dagster_defs.conftest import add_drop

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)


def _defs(path: Path) -> dg.RepositoryDefinition:
    """The definitions as the code location loads them (schedules and sensors resolved)."""
    return build_definitions(load_config(path)).get_repository_def()


def _events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType, step: str) -> int:
    return sum(1 for e in result.all_events if e.event_type == kind and e.step_key == step)


def _attempts(result: dg.ExecuteInProcessResult, step: str) -> int:
    """A step's first start and each restart after a retry."""
    return _events(result, dg.DagsterEventType.STEP_START, step) + _events(
        result, dg.DagsterEventType.STEP_RESTARTED, step
    )


# --- schedules --------------------------------------------------------------------------


def test_each_site_loads_nightly_at_its_own_local_time(cohort: Callable[..., Path]) -> None:
    defs = _defs(cohort(site_settings={"site-a": {"schedule": "01:30"}}))
    nightly_a = defs.get_schedule_def("nightly_site_a")
    nightly_b = defs.get_schedule_def("nightly_site_b")
    assert (nightly_a.cron_schedule, nightly_a.execution_timezone) == ("30 1 * * *", "Europe/Paris")
    assert (nightly_b.cron_schedule, nightly_b.execution_timezone) == ("0 2 * * *", "UTC")
    assert nightly_a.job_name == "site_load"
    assert nightly_a.default_status == dg.DefaultScheduleStatus.STOPPED  # automation: stopped

    tick = dt.datetime(2026, 11, 24, 1, 30, tzinfo=ZoneInfo("Europe/Paris"))
    with dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs) as context:
        data = nightly_a.evaluate_tick(context)
    (request,) = data.run_requests or []
    assert request.partition_key == "site-a"
    assert request.tags[SITE_TAG] == "site-a"
    assert request.tags["rescue/trigger"] == "schedule"


def test_automation_running_starts_schedules_and_sensors(cohort: Callable[..., Path]) -> None:
    defs = _defs(cohort(orchestration={"automation": "running"}))
    assert defs.get_schedule_def("nightly_site_a").default_status == (
        dg.DefaultScheduleStatus.RUNNING
    )
    for name in (
        "drops_site_a",
        "replay_after_loads",
        "validate_after_replay",
        "rescue_run_failures",
    ):
        assert defs.get_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


# --- the drop sensor --------------------------------------------------------------------


def _tick(defs: dg.RepositoryDefinition, name: str, cursor: str | None) -> dg.SensorResult:
    sensor = defs.get_sensor_def(name)
    with dg.build_sensor_context(cursor=cursor, repository_def=defs) as context:
        data = sensor.evaluate_tick(context)
    return dg.SensorResult(
        run_requests=data.run_requests, skip_reason=data.skip_message, cursor=data.cursor
    )


def test_a_new_drop_starts_one_load_of_its_site_and_the_same_drop_never_another(
    cohort: Callable[..., Path], tmp_path: Path
) -> None:
    watched = tmp_path / "incoming" / "site-b"
    watched.mkdir(parents=True)
    path = cohort(site_settings={"site-b": {"watch": str(watched)}})
    defs = _defs(path)
    site_b = path.parent / "site-b"

    first = _tick(defs, "drops_site_b", None)
    assert not first.run_requests and "no new drop" in str(first.skip_reason)

    drop = add_drop(site_b, watched, "2026-11-24")
    second = _tick(defs, "drops_site_b", first.cursor)
    (request,) = second.run_requests or []
    assert request.partition_key == "site-b"
    assert request.run_config == {"ops": {LOAD_OP: {"config": {"drop": str(drop)}}}}
    assert request.tags["rescue/drop"] == "2026-11-24"
    assert request.run_key and request.run_key.startswith("site-b/2026-11-24@")

    again = _tick(defs, "drops_site_b", second.cursor)
    assert not again.run_requests  # same drop, same cursor: no second run

    later = add_drop(site_b, watched, "2026-11-25")
    (next_request,) = _tick(defs, "drops_site_b", again.cursor).run_requests or []
    assert next_request.run_config["ops"][LOAD_OP]["config"]["drop"] == str(later)


def test_a_drop_still_arriving_waits_for_its_files(
    cohort: Callable[..., Path], tmp_path: Path
) -> None:
    watched = tmp_path / "incoming"
    path = cohort(site_settings={"site-a": {"watch": str(watched)}})
    drop = add_drop(path.parent / "site-a", watched, "d1")
    (drop / "Observation.ndjson").unlink()
    result = _tick(_defs(path), "drops_site_a", None)
    assert not result.run_requests
    assert "waiting: d1: missing Observation.ndjson" in str(result.skip_reason)


def test_an_ndjson_site_is_watched_in_its_own_folder_by_default(
    cohort: Callable[..., Path],
) -> None:
    """rescue synth writes manifest.json into each site folder: the first look loads it."""
    defs = _defs(cohort())
    (request,) = _tick(defs, "drops_site_a", None).run_requests or []
    assert request.tags["rescue/drop"] == "."


def test_adding_a_site_is_a_configuration_change_only(cohort: Callable[..., Path]) -> None:
    two = _defs(cohort(sites=2))
    three = _defs(cohort(sites=3))
    job = three.get_job("site_load")
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys() == ["site-a", "site-b", "site-c"]
    assert three.get_schedule_def("nightly_site_c").cron_schedule == "0 2 * * *"
    assert three.get_sensor_def("drops_site_c").job_name == "site_load"
    assert "nightly_site_c" not in {s.name for s in two.schedule_defs}
    assert "drops_site_c" not in {s.name for s in two.sensor_defs}


# --- retries ----------------------------------------------------------------------------


def test_only_the_extract_step_retries_with_exponential_backoff_and_jitter(
    cohort: Callable[..., Path],
) -> None:
    defs = _defs(cohort(orchestration={"retries": 4, "retry_delay_seconds": 20}))
    policy = defs.assets_defs_by_key[RAW_RESOURCES].op.retry_policy
    assert policy is not None
    assert (policy.max_retries, policy.delay) == (4, 20)
    assert policy.backoff == dg.Backoff.EXPONENTIAL
    assert policy.jitter == dg.Jitter.PLUS_MINUS
    for key, assets_def in defs.assets_defs_by_key.items():
        if key != RAW_RESOURCES:
            assert assets_def.op.retry_policy is None, key


def test_a_broken_site_fails_once_and_is_not_retried(
    cohort: Callable[..., Path],
) -> None:
    path = cohort(orchestration={"retries": 3, "retry_delay_seconds": 0})
    shutil.rmtree(path.parent / "site-a")  # deterministic: the source folder is gone
    job = _defs(path).get_job("site_load")
    result = job.execute_in_process(
        partition_key="site-a", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    assert _attempts(result, LOAD_OP) == 1
    assert _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY, LOAD_OP) == 0
    (failure,) = [e for e in result.get_step_failure_events() if e.step_key == LOAD_OP]
    user = failure.step_failure_data.user_failure_data if failure.step_failure_data else None
    assert user is not None and user.description
    assert user.description.startswith("site site-a: source folder")
    assert user.metadata["fault"].value == "deterministic"


def test_an_unreachable_site_is_retried_then_fails(cohort: Callable[..., Path]) -> None:
    """Connection refused is transient: the step is retried `retries` times, then fails."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = {"kind": "fhir", "base_url": f"http://127.0.0.1:{port}/fhir", "max_attempts": 1}
    path = cohort(
        orchestration={"retries": 2, "retry_delay_seconds": 0.05},
        site_settings={"site-a": {"source": source}},
    )
    job = _defs(path).get_job("site_load")
    result = job.execute_in_process(
        partition_key="site-a", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    assert _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY, LOAD_OP) == 2
    assert _attempts(result, LOAD_OP) == 3
    (failure,) = [e for e in result.get_step_failure_events() if e.step_key == LOAD_OP]
    user = failure.step_failure_data.user_failure_data if failure.step_failure_data else None
    assert user is not None and user.metadata["fault"].value == "transient"


# --- failures recorded, replay after loads ------------------------------------------------


def test_a_failed_run_gets_site_step_and_reason_in_its_log(
    cohort: Callable[..., Path], tmp_path: Path
) -> None:
    path = cohort()
    shutil.rmtree(path.parent / "site-b")
    defs = _defs(path)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = defs.get_job("site_load").execute_in_process(
            partition_key="site-b",
            instance=instance,
            tags={SITE_TAG: "site-b"},
            raise_on_error=False,
        )
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        failure = next(
            e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE
        )
        sensor = defs.get_sensor_def("rescue_run_failures")
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=run,
        ).for_run_failure()
        sensor(context)  # type: ignore[operator]
        messages = [e.message or "" for e in instance.all_logs(result.run_id) if e.is_dagster_event]
    (line,) = [m for m in messages if m.startswith("rescue: site_load failed")]
    assert "for site site-b" in line
    assert f"{LOAD_OP} (deterministic): site site-b: source folder" in line


def test_a_successful_load_is_followed_by_one_replay(
    cohort: Callable[..., Path], tmp_path: Path
) -> None:
    defs = _defs(cohort())
    sensor = defs.get_sensor_def("replay_after_loads")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        load = instance.add_run(
            DagsterRun(
                job_name="site_load", status=dg.DagsterRunStatus.SUCCESS, tags={SITE_TAG: "site-a"}
            )
        )
        event = dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name="site_load"
        )
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=load,
        )
        request = sensor(context)  # type: ignore[operator]
        assert isinstance(request, dg.RunRequest)
        assert request.tags["rescue/after_site"] == "site-a"

        instance.add_run(DagsterRun(job_name="replay", status=dg.DagsterRunStatus.NOT_STARTED))
        assert isinstance(sensor(context), dg.SkipReason)  # type: ignore[operator]


def test_a_successful_replay_is_followed_by_one_validation(
    cohort: Callable[..., Path], tmp_path: Path
) -> None:
    defs = _defs(cohort())
    sensor = defs.get_sensor_def("validate_after_replay")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        replay = instance.add_run(DagsterRun(job_name="replay", status=dg.DagsterRunStatus.SUCCESS))
        event = dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name="replay"
        )
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=replay,
        )
        request = sensor(context)  # type: ignore[operator]
        assert isinstance(request, dg.RunRequest)
        assert request.run_key == f"after/{replay.run_id}"

        instance.add_run(DagsterRun(job_name="validate", status=dg.DagsterRunStatus.NOT_STARTED))
        assert isinstance(sensor(context), dg.SkipReason)  # type: ignore[operator]


def test_loads_do_not_wait_for_validation_and_replays_publish_without_it(
    cohort: Callable[..., Path],
) -> None:
    defs = _defs(cohort())
    selected = {
        job: defs.get_job(job).asset_layer.selected_asset_keys
        for job in ("site_load", "site_full_reload", "replay", "validate")
    }
    assert selected["site_load"] == selected["site_full_reload"] == {RAW_RESOURCES}
    assert RAW_VALIDATION not in selected["replay"] and PUBLISHED in selected["replay"]
    assert selected["validate"] == {RAW_VALIDATION}


@pytest.mark.slow
def test_full_reload_rereads_and_replay_rederives_without_fetching(
    cohort: Callable[..., Path], pseudonym_key: str
) -> None:
    path = cohort()
    defs = _defs(path)
    config = load_config(path)
    instance = dg.DagsterInstance.ephemeral()
    for site in ("site-a", "site-b"):
        assert (
            defs.get_job("site_load")
            .execute_in_process(partition_key=site, instance=instance)
            .success
        )
    full = defs.get_job("site_full_reload").execute_in_process(
        partition_key="site-a", instance=instance
    )
    (materialization,) = full.asset_materializations_for_node(LOAD_OP)
    assert materialization.metadata["full"].value is True
    assert materialization.metadata["files_unchanged"].value == 0  # every file read again

    with duckdb.connect(str(config.work_db), read_only=True) as con:
        loads_before = con.execute("SELECT count(*) FROM raw.loads").fetchone()
    for site in ("site-a", "site-b"):
        shutil.rmtree(path.parent / site)  # nothing to fetch from: replay must not try
    replay = defs.get_job("replay").execute_in_process(instance=instance)
    assert replay.success
    with duckdb.connect(str(config.work_db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.loads").fetchone() == loads_before
        (subjects,) = con.execute("SELECT count(*) FROM core.subjects").fetchone() or (0,)
    assert subjects == 8
    assert config.warehouse.exists()


CHECK_STEPS = ("quality_checks", "raw__fhir_resources_sites_loaded_recently")


@pytest.mark.slow
def test_the_command_lines_replay_runs_the_asset_checks_after_the_publish_and_report(
    cohort: Callable[..., Path], pseudonym_key: str
) -> None:
    """They only annotate assets for the UI: analysts and sponsors do not wait for them."""
    config = load_config(cohort())
    defs = build_definitions(config, retries=False, checks_last=True)
    instance = dg.DagsterInstance.ephemeral()
    for site in ("site-a", "site-b"):
        load = defs.resolve_job_def("site_load")
        assert load.execute_in_process(partition_key=site, instance=instance).success
    replay = defs.resolve_job_def("replay").execute_in_process(instance=instance)
    assert replay.success
    started = [e.step_key for e in replay.all_events if e.event_type_value == "STEP_START"]
    report = started.index("report__sponsors")
    assert started.index("warehouse__published") < report
    assert all(report < started.index(step) for step in CHECK_STEPS)


def test_the_daemons_runs_leave_the_checks_priority_alone(cohort: Callable[..., Path]) -> None:
    """In the daemon's runs a step's priority also orders its claim on the warehouse pool
    across runs: the checks of a replay would wait behind every site load's steps."""
    config = load_config(cohort())
    for checks_last, expected in ((False, None), (True, "-1")):
        job = build_definitions(config, checks_last=checks_last).resolve_job_def("replay")
        for step in CHECK_STEPS:
            node = job.graph.node_named(step)
            assert node.tags.get("dagster/priority") == expected
