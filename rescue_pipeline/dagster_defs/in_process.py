"""Run the pipeline's assets in this process, one site partition at a time.

`rescue run` and `rescue demo` use this, so the command line runs exactly the assets that
`dagster dev` shows, and the runs appear in the Dagster instance's history when DAGSTER_HOME is
set. A failed site is reported and the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from rescue_pipeline.config import Config
from rescue_pipeline.dagster_defs.definitions import (
    RescueConfig,
    build_assets,
    build_quality_checks,
)
from rescue_pipeline.dagster_defs.failures import failure_reason
from rescue_pipeline.dagster_defs.keys import PUBLISHED, RAW_RESOURCES, RAW_VALIDATION
from rescue_pipeline.raw.workers import shutdown_pools
from rescue_pipeline.stopping import StopRequested, stop_requested, stop_signal

# The command line prints its own one-line errors; Dagster's console logger would add tracebacks.
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class SiteRun:
    site_id: str
    success: bool
    run_id: str
    error: str | None = None
    unchanged: bool = False  # core to report: nothing new since the last publish, nothing run


@dataclass
class PipelineRun:
    sites: list[SiteRun] = field(default_factory=list)
    stopped: bool = False  # a signal stopped a site's run: the sites after it were not run

    @property
    def failed(self) -> list[SiteRun]:
        return [s for s in self.sites if not s.success]


def instance_for(home: Path | None) -> dg.DagsterInstance:
    """The instance at `home` (or DAGSTER_HOME); an ephemeral one when neither is given."""
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        yaml = home / "dagster.yaml"
        if not yaml.exists():
            yaml.write_text("telemetry:\n  enabled: false\n")
        return dg.DagsterInstance.from_config(str(home))
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def run_sites(
    config: Config,
    site_ids: list[str],
    *,
    instance: dg.DagsterInstance,
    on_site: Callable[[str], None] | None = None,
    on_done: Callable[[SiteRun], None] | None = None,
) -> PipelineRun:
    assets = build_assets(config, retries=False)  # a failed site is reported at once
    # The site's landing only: core and later run once, after every site; validation last.
    raw_keys = [RAW_RESOURCES]
    resources = {"rescue": RescueConfig(config_path=str(config.path.resolve()))}
    out = PipelineRun()
    for site_id in site_ids:
        if on_site:
            on_site(site_id)
        result = dg.materialize(
            assets,
            selection=raw_keys,
            partition_key=site_id,
            resources=resources,
            instance=instance,
            run_config=_QUIET,
            raise_on_error=False,
            tags={"rescue/site": site_id},
        )
        error = None
        stopped = False
        if not result.success:
            failures = result.get_step_failure_events()
            error = failure_reason(failures[0]) if failures else "run failed"
            stopped = _stopped(result)
            if stopped:
                error = f"site {site_id}: stopped by {stop_signal()}"
        run = SiteRun(site_id, result.success, result.run_id, error)
        out.sites.append(run)
        if on_done:
            on_done(run)
        if stopped:
            out.stopped = True
            break
    shutdown_pools()  # the landing's worker processes, and what they hold, go now
    return out


def _stopped(result: dg.ExecuteInProcessResult) -> bool:
    """Whether a failed run failed because a stop was asked for: our handler ran, or Dagster
    raised its interrupt (in a step, or between steps, when the run itself records it), or
    DuckDB turned either into "Query interrupted" (nothing in the pipeline interrupts a query
    otherwise)."""
    if stop_requested():
        return True
    for event in result.all_events:
        data = event.event_specific_data
        error = getattr(data, "error", None)
        while error is not None:
            if error.cls_name in _INTERRUPTS or (
                error.cls_name in ("RuntimeError", "InterruptException")
                and "Query interrupted" in error.message
            ):
                return True
            error = error.cause or error.context
    return False


_INTERRUPTS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt", "StopRequested")


def run_core(config: Config, *, instance: dg.DagsterInstance) -> SiteRun:
    """Materialise the core and analysis tables (all sites), check, publish, in process; the
    quality asset checks on the tables run too."""
    assets = build_assets(config, retries=False)
    checks = build_quality_checks({k for a in assets for k in a.keys})
    layers = ("core", "analysis", "quality", "warehouse", "report")
    core_keys = [key for a in assets for key in a.keys if key.path[0] in layers]
    result = dg.materialize(
        [*assets, *checks],
        selection=core_keys,
        resources={"rescue": RescueConfig(config_path=str(config.path.resolve()))},
        instance=instance,
        run_config=_QUIET,
        raise_on_error=False,
    )
    failures = result.get_step_failure_events()
    error = failure_reason(failures[0]) if failures else None
    if not result.success and error is None:
        error = "the run failed outside its steps (see the Dagster run's log)"
    if not result.success and _stopped(result):
        published = any(e.asset_key == PUBLISHED for e in result.get_asset_materialization_events())
        raise StopRequested(
            f"stopped by {stop_signal()} after the publish, while the report was written"
            if published
            else f"stopped by {stop_signal()} during core, analysis, quality or publish",
            published=published,
        )
    built = any(
        e.asset_key is not None and e.asset_key.path[0] == "core"
        for e in result.get_asset_materialization_events()
    )
    return SiteRun(
        "all", result.success, result.run_id, error, unchanged=result.success and not built
    )


def run_validation(config: Config, *, instance: dg.DagsterInstance) -> SiteRun:
    """Validate every version not validated yet (after the publish: nothing waits for it)."""
    assets = build_assets(config, retries=False)
    result = dg.materialize(
        assets,
        selection=[RAW_VALIDATION],
        resources={"rescue": RescueConfig(config_path=str(config.path.resolve()))},
        instance=instance,
        run_config=_QUIET,
        raise_on_error=False,
    )
    failures = result.get_step_failure_events()
    error = failure_reason(failures[0]) if failures else None
    if not result.success and _stopped(result):
        raise StopRequested(
            f"stopped by {stop_signal()} while validating, after the publish and the report",
            published=True,
        )
    return SiteRun("all", result.success, result.run_id, error)
