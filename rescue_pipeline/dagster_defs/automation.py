"""When the pipeline runs, built from sites.yaml: the jobs, a nightly schedule and a drop sensor
per site, a replay after every successful load, an hourly freshness check, and a record of every
failed run.

Jobs (each launchable from the UI's launchpad):
- `site_load` (partitioned by site): the site's extract and landing;
- `site_full_reload`: the same with `full: true` (files re-read, watermarks ignored);
- `replay`: core, analysis, checks, publish and report re-derived from the raw layer as it is,
  nothing fetched. It follows every successful load (sensor `replay_after_loads`), and is the
  backfill of this pipeline after a rule or concept-map change;
- `validate`: full FHIR validation of the versions landed since, after each successful replay
  (sensor `validate_after_replay`): nothing published waits for it;
- `freshness`: the per-site staleness check alone (hourly).

Site loads run in parallel, one per site at a time; a failed site does not hold the others, and
the next replay publishes whatever has landed.
"""

import json
from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.events import EngineEventData

from rescue_pipeline.config import Config, Environment, SiteConfig
from rescue_pipeline.dagster_defs.failures import failure_reason, secrets_of
from rescue_pipeline.dagster_defs.keys import (
    DROP_TAG,
    FULL_TAG,
    LOAD_OP,
    PUBLISH_TAG,
    RAW_RESOURCES,
    RAW_VALIDATION,
    SITE_TAG,
    TRIGGER_TAG,
    dagster_name,
)
from rescue_pipeline.extract.drops import find_drops
from rescue_pipeline.extract.http import scrub

SITE_JOB = "site_load"
FULL_JOB = "site_full_reload"
REPLAY_JOB = "replay"
VALIDATE_JOB = "validate"
FRESHNESS_JOB = "freshness"
FRESHNESS_CRON = "15 * * * *"


def build_jobs(freshness: dg.AssetChecksDefinition) -> list[UnresolvedAssetJobDefinition]:
    # a site's load judges its own data, not whether the other sites are fresh: the freshness
    # check runs in the replay that follows every load (and hourly)
    load = dg.AssetSelection.assets(RAW_RESOURCES) - dg.AssetSelection.checks(freshness)
    validation = dg.AssetSelection.assets(RAW_VALIDATION)
    return [
        dg.define_asset_job(
            SITE_JOB,
            selection=load,
            description="One site's load (incremental); a replay follows.",
        ),
        dg.define_asset_job(
            FULL_JOB,
            selection=load,
            config={"ops": {LOAD_OP: {"config": {"full": True}}}},
            run_tags={FULL_TAG: "true"},
            description="One site's full reload (`rescue run --full`): every file re-read, "
            "watermarks ignored; nothing is duplicated.",
        ),
        dg.define_asset_job(
            REPLAY_JOB,
            # the freshness check too: after every load the UI says which sites are stale
            selection=(
                dg.AssetSelection.all() - dg.AssetSelection.assets(RAW_RESOURCES) - validation
            )
            | dg.AssetSelection.checks(freshness),
            run_tags={PUBLISH_TAG: "true"},
            description="Core, analysis, checks, publish and report re-derived from the raw "
            "layer as it is, without fetching (after a rule or concept-map change); then "
            "which sites are stale.",
        ),
        dg.define_asset_job(
            VALIDATE_JOB,
            selection=validation,
            description="Full FHIR validation of every version not validated yet (after each "
            "replay; nothing published waits for it).",
        ),
        dg.define_asset_job(
            FRESHNESS_JOB,
            selection=dg.AssetSelection.checks(freshness),
            description="Which sites have not landed within orchestration.stale_after_hours.",
        ),
    ]


def _status(config: Config) -> dg.DefaultScheduleStatus:
    running = config.orchestration.automation == "running"
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


def _sensor_status(config: Config) -> dg.DefaultSensorStatus:
    running = config.orchestration.automation == "running"
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


def site_schedule(config: Config, site: SiteConfig) -> dg.ScheduleDefinition:
    """The site's nightly load, at `schedule:` in the site's own time zone."""

    @dg.schedule(
        name=f"nightly_{dagster_name(site.id)}",
        cron_schedule=site.schedule,
        execution_timezone=site.timezone,
        job_name=SITE_JOB,
        default_status=_status(config),
        description=f"Loads {site.id} at `{site.schedule}` ({site.timezone}).",
    )
    def nightly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(
            partition_key=site.id, tags={SITE_TAG: site.id, TRIGGER_TAG: "schedule"}
        )

    return nightly


def drop_sensor(config: Config, site: SiteConfig) -> dg.SensorDefinition | None:
    """Starts the site's load for each new complete drop in its watched folder. The cursor holds
    the drops already seen, so the same drop never starts a second run."""
    watched = site.watched_folder
    if watched is None:
        return None

    @dg.sensor(
        name=f"drops_{dagster_name(site.id)}",
        job_name=SITE_JOB,
        minimum_interval_seconds=config.orchestration.sensor_interval_seconds,
        default_status=_sensor_status(config),
        description=f"Loads {site.id} when a new NDJSON drop (with its manifest.json) appears "
        f"in {watched}.",
    )
    def drops(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        seen = set(json.loads(context.cursor)) if context.cursor else set()
        found = find_drops(watched)
        complete = [d for d in found if d.complete]
        requests = [
            dg.RunRequest(
                run_key=f"{site.id}/{drop.key}",
                partition_key=site.id,
                run_config={"ops": {LOAD_OP: {"config": {"drop": str(drop.folder)}}}},
                tags={SITE_TAG: site.id, TRIGGER_TAG: "sensor", DROP_TAG: drop.name},
            )
            for drop in complete
            if drop.key not in seen
        ]
        waiting = [
            f"{d.name}: "
            + ("manifest.json unreadable" if d.unreadable else "missing ")
            + ", ".join(d.missing)
            for d in found
            if not d.complete
        ]
        skip = None
        if not requests:
            skip = f"no new drop in {watched}"
            if waiting:
                skip += f" (waiting: {'; '.join(waiting)})"
        # Only drops still there are remembered, so the cursor does not grow without end.
        cursor = json.dumps(sorted(d.key for d in complete))
        return dg.SensorResult(run_requests=requests, skip_reason=skip, cursor=cursor)

    return drops


def replay_sensor(
    config: Config, jobs: dict[str, UnresolvedAssetJobDefinition]
) -> dg.SensorDefinition:
    """After a site's load succeeds, replay core to report from the raw layer. A replay already
    waiting to start will read this load too, so none is added then."""

    @dg.run_status_sensor(
        name="replay_after_loads",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[jobs[SITE_JOB], jobs[FULL_JOB]],
        request_job=jobs[REPLAY_JOB],
        default_status=_sensor_status(config),
        description="Publishes what a successful site load landed (core to report).",
    )
    def replay_after_loads(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
        waiting = context.instance.get_run_records(
            dg.RunsFilter(
                job_name=REPLAY_JOB,
                statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED],
            ),
            limit=1,
        )
        if waiting:
            return dg.SkipReason(f"replay {waiting[0].dagster_run.run_id} is queued already")
        site = context.dagster_run.tags.get(SITE_TAG, "")
        return dg.RunRequest(
            run_key=f"after/{context.dagster_run.run_id}",
            tags={TRIGGER_TAG: "after-load", "rescue/after_site": site},
        )

    return replay_after_loads


def validate_sensor(
    config: Config, jobs: dict[str, UnresolvedAssetJobDefinition]
) -> dg.SensorDefinition:
    """After a replay has published, validate what was landed since (one run waiting is
    enough: it validates everything not validated yet)."""

    @dg.run_status_sensor(
        name="validate_after_replay",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[jobs[REPLAY_JOB]],
        request_job=jobs[VALIDATE_JOB],
        default_status=_sensor_status(config),
        description="Validates the newly landed versions once a replay has published.",
    )
    def validate_after_replay(
        context: dg.RunStatusSensorContext,
    ) -> dg.RunRequest | dg.SkipReason:
        waiting = context.instance.get_run_records(
            dg.RunsFilter(
                job_name=VALIDATE_JOB,
                statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED],
            ),
            limit=1,
        )
        if waiting:
            return dg.SkipReason(f"validate {waiting[0].dagster_run.run_id} is queued already")
        return dg.RunRequest(
            run_key=f"after/{context.dagster_run.run_id}", tags={TRIGGER_TAG: "after-replay"}
        )

    return validate_after_replay


def failure_sensor(config: Config) -> dg.SensorDefinition:
    """Writes into a failed run's own log what failed, for which site and why (secrets
    scrubbed), as one event with the details as metadata; `dagster` shows it with the run."""

    @dg.run_failure_sensor(
        name="rescue_run_failures",
        default_status=_sensor_status(config),
        description="Records in each failed run's log which step failed, for which site, why, "
        "and whether it was retried.",
    )
    def record_failure(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        secrets = secrets_of(config, Environment.current().values)
        site = run.tags.get(SITE_TAG) or run.tags.get("dagster/partition") or "all sites"
        steps: dict[str, str] = {}
        faults: dict[str, str] = {}
        for event in context.get_step_failure_events():
            key = event.step_key or "run"
            steps[key] = scrub(failure_reason(event), secrets)
            user = event.step_failure_data.user_failure_data if event.step_failure_data else None
            fault = user.metadata.get("fault") if user else None
            faults[key] = str(fault.value) if fault is not None else "deterministic"
        if steps:
            what = "; ".join(f"{step} ({faults[step]}): {why}" for step, why in steps.items())
        else:
            what = scrub(context.failure_event.message or "the run failed", secrets)
        message = f"rescue: {run.job_name} failed for site {site}: {what}"
        context.instance.report_engine_event(
            message,
            dagster_run=run,
            engine_event_data=EngineEventData(
                metadata={
                    "site": site,
                    "job": run.job_name,
                    "failed_steps": steps,
                    "faults": faults,
                    "trigger": run.tags.get(TRIGGER_TAG, "ui"),
                }
            ),
        )
        context.log.error(message)

    return record_failure


def build_automation(
    config: Config, jobs: Sequence[UnresolvedAssetJobDefinition]
) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    by_name = {job.name: job for job in jobs}
    schedules = [site_schedule(config, site) for site in config.sites]
    schedules.append(
        dg.ScheduleDefinition(
            name="freshness_hourly",
            cron_schedule=FRESHNESS_CRON,
            job_name=FRESHNESS_JOB,
            default_status=_status(config),
            description="Checks every hour which sites are stale.",
        )
    )
    sensors = [s for site in config.sites if (s := drop_sensor(config, site)) is not None]
    sensors.append(replay_sensor(config, by_name))
    sensors.append(validate_sensor(config, by_name))
    sensors.append(failure_sensor(config))
    return schedules, sensors
