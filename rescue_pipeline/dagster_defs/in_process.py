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

# The command line prints its own one-line errors; Dagster's console logger would add tracebacks.
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class SiteRun:
    site_id: str
    success: bool
    run_id: str
    error: str | None = None


@dataclass
class PipelineRun:
    sites: list[SiteRun] = field(default_factory=list)

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
    # The site's partition of the raw assets only: core and later run once, after every site.
    raw_keys = [key for a in assets for key in a.keys if key.path[0] == "raw"]
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
        if not result.success:
            failures = result.get_step_failure_events()
            error = failure_reason(failures[0]) if failures else "run failed"
        run = SiteRun(site_id, result.success, result.run_id, error)
        out.sites.append(run)
        if on_done:
            on_done(run)
    return out


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
    return SiteRun("all", result.success, result.run_id, error)
