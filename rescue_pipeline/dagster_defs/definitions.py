"""Dagster wiring: assets call the layers' functions and report metadata; nothing is computed here.

`build_definitions(config)` builds everything from one configuration, so a new site in
sites.yaml brings its partition with no code change. `defs` is what `dagster dev` and
`dagster definitions validate` load (workspace.yaml): it reads the configuration named by
RESCUE_CONFIG when the code location loads, never at import.
"""

import dataclasses
import datetime as dt
import html
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
from pydantic import Field
from sqlalchemy import Table

from rescue_pipeline import run_report
from rescue_pipeline.config import (
    CONFIG_ENV,
    Config,
    ConfigError,
    Environment,
    NdjsonSource,
    SiteConfig,
    load_config,
)
from rescue_pipeline.dagster_defs.automation import build_automation, build_jobs
from rescue_pipeline.dagster_defs.failures import fail, failure_line, secrets_of
from rescue_pipeline.dagster_defs.keys import (
    FULL_TAG,
    LAST_IN_RUN,
    PUBLISHED,
    QUALITY,
    RAW_RESOURCES,
    RAW_VALIDATION,
    REPORT,
    REPORT_TAG,
    TRIGGER_TAG,
    WAREHOUSE_POOL,
)
from rescue_pipeline.quality.gate import PublishRefused
from rescue_pipeline.quality.latest import latest_quality_run
from rescue_pipeline.quality.suites import load_suites, suites_sha256
from rescue_pipeline.report import drawing
from rescue_pipeline.run_report import (
    AnalysisPart,
    CorePart,
    LoadPart,
    PublicationPart,
    QualityPart,
    ReportPart,
    ValidationPart,
)
from rescue_pipeline.site_load import (
    build_core_layer,
    check_quality,
    derive_analysis_layer,
    load_site,
    publish_warehouse,
    validate_site,
    work_db,
)
from rescue_pipeline.warehouse.analysis_tables import ANALYSIS_TABLES
from rescue_pipeline.warehouse.core_tables import CORE_TABLES

RUN_LOGS = frozenset({"build_runs", "derivation_runs"})  # a layer's own log, not an asset


class RescueConfig(dg.ConfigurableResource):
    """Where the pipeline's configuration lives; read once per run."""

    config_path: str

    def load(self) -> Config:
        return load_config(self.config_path)


class LoadSettings(dg.Config):
    """Run config of a site's load (the launchpad shows it): what `rescue run --full` does, or
    the drop a sensor saw."""

    full: bool = Field(
        default=False, description="Re-read every file and ignore watermarks (a full reload)."
    )
    drop: str | None = Field(
        default=None,
        description="Land this drop folder (inside the site's watched folder) instead of the "
        "site's source.",
    )


def extract_retry_policy(config: Config) -> dg.RetryPolicy:
    """Transient faults only (failures.py decides): exponential backoff with jitter."""
    return dg.RetryPolicy(
        max_retries=config.orchestration.retries,
        delay=config.orchestration.retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def site_partitions(config: Config) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([site.id for site in config.sites])


def build_assets(config: Config, *, retries: bool = True) -> list[dg.AssetsDefinition]:
    """The pipeline's assets. `retries=False` for the command line, which reports a failed site
    at once (its HTTP layer still retries each request)."""
    partitions = site_partitions(config)
    stale_after = dt.timedelta(hours=config.orchestration.stale_after_hours)

    @dg.asset(
        key=RAW_RESOURCES,
        group_name="raw",
        partitions_def=partitions,
        kinds={"duckdb"},
        pool=WAREHOUSE_POOL,
        retry_policy=extract_retry_policy(config) if retries else None,
        description=(
            "Every FHIR resource a site sent, landed as distinct versions "
            "(raw.fhir_resource_versions / raw.fhir_resources); lines that fail the structural "
            "checks go to raw.quarantine. Retried with backoff after a transient fault only."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "received_reconciles",
                asset=RAW_RESOURCES,
                description="For this load: received = accepted + quarantined, per resource type.",
            )
        ],
    )
    def raw_fhir_resources(
        context: dg.AssetExecutionContext, rescue: RescueConfig, config: LoadSettings
    ) -> dg.MaterializeResult:
        settings = config  # Dagster passes run config as `config`; `cfg` is sites.yaml
        site_id = context.partition_key
        full = settings.full or context.run.tags.get(FULL_TAG) == "true"
        secrets: tuple[str, ...] = ()
        cfg: Config | None = None
        try:
            cfg = rescue.load()
            secrets = secrets_of(cfg, Environment.current().values)
            site = cfg.site(site_id)
            if settings.drop:
                site = _drop_site(site, Path(settings.drop))
            result = load_site(cfg, site, full=full)
        except Exception as exc:
            error = failure_line(exc, secrets)
            _record_part(context, cfg, LoadPart(site_id, ok=False, full=full, error=error))
            fail(exc, site_id=site_id, secrets=secrets)
        total = result.total()
        part = LoadPart(
            site_id, ok=True, full=full, load_id=result.load_id, received=total.received,
            accepted=total.accepted, quarantined=total.quarantined,
            new_versions=total.new_versions, files_read=result.files_read,
            files_unchanged=result.files_unchanged, seconds=round(result.seconds, 2),
        )  # fmt: skip
        _record_part(context, cfg, part)  # the load committed: it is reported as landed
        try:
            with work_db(cfg) as con:
                mismatched = con.execute(
                    "SELECT resource_type FROM raw.loads "
                    "WHERE load_id = ? AND received <> accepted + quarantined",
                    [result.load_id],
                ).fetchall()
        except Exception as exc:
            fail(exc, site_id=site_id, secrets=secrets)
        deleted = result.deletions.total() if result.deletions else None
        return dg.MaterializeResult(
            metadata={
                "load_id": result.load_id,
                "full": full,
                "drop": settings.drop or "",
                "rows_in": total.received,
                "rows_out": total.accepted,
                "received": total.received,
                "accepted": total.accepted,
                "quarantined": total.quarantined,
                "new_versions": total.new_versions,
                "files_read": result.files_read,
                "files_unchanged": result.files_unchanged,
                "seconds": round(result.seconds, 2),
                "quarantine_reasons": dict(result.reasons),
                "deletions_received": deleted.received if deleted else 0,
                "deletions_recorded": deleted.recorded if deleted else 0,
                "deletions_quarantined": deleted.quarantined if deleted else 0,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="received_reconciles",
                    passed=not mismatched,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"types_not_reconciling": [r[0] for r in mismatched]},
                )
            ],
        )

    @dg.asset(
        key=RAW_VALIDATION,
        group_name="raw",
        deps=[RAW_RESOURCES],
        kinds={"duckdb"},
        pool=WAREHOUSE_POOL,
        description=(
            "Full FHIR validation (fhir.resources R4B models) of every version not validated "
            "yet, in worker processes; findings are recorded, resources are never moved and "
            "nothing published depends on it, so it runs after the publish (job `validate`)."
        ),
    )
    def raw_version_validation(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> dg.MaterializeResult:
        config = rescue.load()
        with _reported(context, config, ValidationPart):
            result = validate_site(config)
        part = ValidationPart(
            ok=True, validated=result.validated, outcomes=dict(result.outcomes),
            seconds=round(result.seconds, 2),
        )  # fmt: skip
        _record_part(context, config, part)
        return dg.MaterializeResult(
            metadata={
                "validated": result.validated,
                "outcomes": dict(result.outcomes),
                "seconds": round(result.seconds, 2),
                "resources_per_second": round(result.per_second, 1),
            }
        )

    # Skippable: when nothing the derivation reads changed since the last publish, the core
    # build materializes nothing and Dagster skips analysis, quality, publish and report.
    core_specs = _table_specs(CORE_TABLES, deps=[RAW_RESOURCES], skippable=True)

    @dg.multi_asset(specs=core_specs, name="core_tables", pool=WAREHOUSE_POOL)
    def core_tables(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> Iterator[dg.MaterializeResult]:
        config = rescue.load()
        with _reported(context, config, CorePart):
            result = build_core_layer(config)
        part = CorePart(
            ok=True, unchanged=result.unchanged, rows=dict(result.rows),
            seconds=round(result.seconds, 2),
        )  # fmt: skip
        _record_part(context, config, part)
        if result.unchanged:
            context.log.info(
                "Nothing new since the last publish (same raw layer, configuration, cut-off, "
                "key and code): the published warehouse and report stand; nothing is rebuilt."
            )
            return
        for spec in core_specs:
            name = spec.key.path[-1]
            yield dg.MaterializeResult(
                asset_key=spec.key,
                metadata={
                    "dagster/row_count": result.rows.get(name, 0),
                    "build_seconds": result.seconds,
                },
            )

    analysis_specs = _table_specs(ANALYSIS_TABLES, deps=[spec.key for spec in core_specs])

    @dg.multi_asset(specs=analysis_specs, name="analysis_tables", pool=WAREHOUSE_POOL)
    def analysis_tables(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> Iterator[dg.MaterializeResult]:
        config = rescue.load()
        with _reported(context, config, AnalysisPart):
            # the command line runs every step in its own process: the quality step's worker
            # can start now (Dagster's multiprocess executor would end it with this step)
            in_process = context.run.tags.get(TRIGGER_TAG) == "cli"
            result = derive_analysis_layer(config, start_quality_worker=in_process)
        part = AnalysisPart(
            ok=True, eligible=result.eligible.eligible,
            not_eligible=result.eligible.not_eligible,
            eligibility_unknown=result.eligible.unknown,
            pfs_events=result.pfs.events, pfs_censored=result.pfs.censored,
        )  # fmt: skip
        _record_part(context, config, part)
        for spec in analysis_specs:
            yield dg.MaterializeResult(
                asset_key=spec.key,
                metadata={
                    "dagster/row_count": result.rows.get(spec.key.path[-1], 0),
                    "eligible": dataclasses.asdict(result.eligible),
                    "pfs": dataclasses.asdict(result.pfs),
                },
            )

    @dg.asset(
        key=QUALITY,
        group_name="quality",
        deps=[RAW_RESOURCES, *(spec.key for spec in core_specs), *(s.key for s in analysis_specs)],
        kinds={"duckdb"},
        pool=WAREHOUSE_POOL,
        description="Great Expectations suites (shipped in rescue_pipeline/quality/suites) over "
        "raw, core and analysis; each expectation is a check named by its id.",
    )
    def quality_results(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> dg.MaterializeResult:
        config = rescue.load()
        with _reported(context, config, QualityPart):
            result = check_quality(config)
        part = QualityPart(
            ok=True, run_id=result.run_id, suites_sha256=suites_sha256(),
            checks=len(result.checks), warnings=len(result.warnings),
            critical_failures=tuple(
                f"{c.check_id} at {c.site_id or 'all sites'}" for c in result.critical_failures
            ),
        )  # fmt: skip
        _record_part(context, config, part)
        return dg.MaterializeResult(
            metadata={
                "run_id": result.run_id,
                "checks": len(result.checks),
                "critical_failures": len(result.critical_failures),
                "warnings": len(result.warnings),
            }
        )

    @dg.asset(
        key=PUBLISHED,
        group_name="publish",
        deps=[QUALITY],
        kinds={"duckdb"},
        pool=WAREHOUSE_POOL,
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=stale_after),
        description=(
            "The published warehouse (core and analysis, never raw): built beside the published "
            "file and renamed over it, so readers never see a half-written load. Stale when not "
            "published for orchestration.stale_after_hours."
        ),
    )
    def published_warehouse(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> dg.MaterializeResult:
        config = rescue.load()
        if context.run.tags.get(TRIGGER_TAG) == "cli":  # the report step runs in this process
            drawing.start()  # matplotlib's import while the publish leaves a processor free
        with work_db(config, read_only=True) as con:
            latest = latest_quality_run(con)
        try:
            with _reported(context, config, PublicationPart, expected=(PublishRefused,)):
                result = publish_warehouse(config, latest)
        except PublishRefused as exc:
            _record_part(context, config, PublicationPart(ok=False, refused=str(exc)))
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        part = PublicationPart(
            ok=True, published_at=result.published_at,
            published=tuple(s.id for s in config.sites if s.id not in result.held),
            held=dict(result.held),
            held_since={
                site: since.isoformat() if since else None
                for site, since in result.held_since.items()
            },
        )  # fmt: skip
        _record_part(context, config, part)
        for site, reason in result.held.items():
            context.log.warning(f"site {site} held back (its last published data kept): {reason}")
        return dg.MaterializeResult(
            metadata={
                "path": str(result.path),
                "tables": len(result.rows),
                "seconds": result.seconds,
                "held_sites": sorted(result.held),
            }
        )

    @dg.asset(
        key=REPORT,
        group_name="publish",
        deps=[PUBLISHED],
        kinds={"html"},
        description=(
            "The sponsors' data-quality site (counts only) and each site's data queries, "
            "from the published warehouse: `report:` in sites.yaml, default report/ beside it."
        ),
    )
    def sponsors_report(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> dg.MaterializeResult:
        # matplotlib is 0.3 s to import: only a run that writes the report pays for it
        from rescue_pipeline.report.render import write_report as write_sponsors_report

        config = rescue.load()
        with _reported(context, config, ReportPart):
            files = write_sponsors_report(
                config.warehouse, config.report_dir, study_id=config.study_id,
                site_ids=[s.id for s in config.sites],
            )  # fmt: skip
        _record_part(context, config, ReportPart(ok=True, pages=len(files.pages)))
        return dg.MaterializeResult(
            metadata={
                "index": dg.MetadataValue.path(str(files.sponsors / "index.html")),
                "data_queries": dg.MetadataValue.path(str(files.queries)),
                "pages": len(files.pages),
                "open_queries": dict(files.query_files),
            }
        )

    return [
        raw_fhir_resources,
        raw_version_validation,
        core_tables,
        analysis_tables,
        quality_results,
        published_warehouse,
        sponsors_report,
    ]


def _record_part(context: dg.AssetExecutionContext, config: Config | None, part: object) -> None:
    """Add the step's part to its run's report (ops.run_reports), on a connection of its own.
    A report that cannot be written (another writer, a full disk) costs the report, never the
    run: the runner then adds the missing part from Dagster's record."""
    if config is None:
        return
    try:
        with work_db(config) as con:
            run_report.record(
                con,
                report_id=context.run.tags.get(REPORT_TAG, context.run.run_id),
                dagster_run_id=context.run.run_id,
                job=context.run.job_name,
                part=part,
            )
    except Exception as exc:
        context.log.warning(f"run report: {type(part).__name__} not recorded: {failure_line(exc)}")


@contextmanager
def _reported(
    context: dg.AssetExecutionContext,
    config: Config,
    kind: type,
    *,
    expected: tuple[type[BaseException], ...] = (),
) -> Iterator[None]:
    """A failure inside is recorded as the step's part (ok false, its one line), then raised."""
    try:
        yield
    except expected:
        raise
    except Exception as exc:
        secrets = secrets_of(config, Environment.current().values)
        _record_part(context, config, kind(ok=False, error=failure_line(exc, secrets)))
        raise


def _drop_site(site: SiteConfig, drop: Path) -> SiteConfig:
    """The site as configured, its source replaced by one drop of its watched folder."""
    watched = site.watched_folder
    if watched is None or not drop.resolve().is_relative_to(watched.resolve()):
        raise ConfigError(
            f"site {site.id}: drop {drop} is not inside the site's watched folder "
            f"({watched or 'none: set watch: in sites.yaml'})"
        )
    return dataclasses.replace(site, source=NdjsonSource(path=drop))


def build_freshness_check(config: Config, *, last: bool = False) -> dg.AssetChecksDefinition:
    """Per site: when did raw/fhir_resources last land it? Older than stale_after_hours (or
    never) is stale. Dagster's own freshness checks look at the latest partition only. `last`:
    after the other steps ready with it (keys.LAST_IN_RUN)."""
    site_ids = [site.id for site in config.sites]
    hours = config.orchestration.stale_after_hours

    @dg.asset_check(
        asset=RAW_RESOURCES,
        name="sites_loaded_recently",
        op_tags=LAST_IN_RUN if last else None,
        description=f"Every site landed within the last {hours:g} hours "
        "(orchestration.stale_after_hours).",
    )
    def sites_loaded_recently(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        now = time.time()
        age: dict[str, float | None] = {}
        for site_id in site_ids:
            records = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=RAW_RESOURCES, asset_partitions=[site_id]),
                limit=1,
            ).records
            age[site_id] = round((now - records[0].timestamp) / 3600, 2) if records else None
        stale = [s for s, h in age.items() if h is None or h > hours]
        return dg.AssetCheckResult(
            passed=not stale,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"stale: {', '.join(stale)}" if stale else "every site is fresh",
            metadata={
                "stale_sites": stale,
                "hours_since_last_load": age,
                "stale_after_hours": hours,
            },
        )

    return sites_loaded_recently


def build_quality_checks(
    table_keys: set[dg.AssetKey], *, last: bool = False
) -> list[dg.AssetChecksDefinition]:
    """Each expectation of a core or analysis suite, as an asset check on the table it covers
    (`last`: after the other steps ready with it, keys.LAST_IN_RUN).

    The suites run once in quality/results (per site, into quality.results); the checks read
    that run back, so the UI shows pass/fail, the failing sites and row counts on each table.
    """
    specs: list[dg.AssetCheckSpec] = []
    severity_of: dict[str, str] = {}
    for suite in load_suites():
        key = dg.AssetKey(suite.table.split("."))
        if key not in table_keys:
            continue  # raw suites (site-partitioned assets) and cross-table ones stay in metadata
        for expectation in suite.expectations:
            meta = expectation.get("meta", {})
            specs.append(
                dg.AssetCheckSpec(
                    expectation["id"],  # the expectation's stable id: ca125_units_known
                    asset=key,
                    description=meta.get("description"),
                    additional_deps=[QUALITY],
                )
            )
            severity_of[expectation["id"]] = meta.get("severity", "warning")
    if not specs:
        return []

    @dg.multi_asset_check(
        specs=specs, name="quality_checks", can_subset=True, pool=WAREHOUSE_POOL,
        op_tags=LAST_IN_RUN if last else None,
    )  # fmt: skip
    def quality_checks(
        context: dg.AssetCheckExecutionContext, rescue: RescueConfig
    ) -> Iterator[dg.AssetCheckResult]:
        with work_db(rescue.load(), read_only=True) as con:
            latest = latest_quality_run(con)
        checks = latest.checks if latest else []
        for check_key in context.selected_asset_check_keys:
            severity = severity_of[check_key.name]
            rows = [c for c in checks if c.check_id == check_key.name]
            failing = [c for c in rows if not c.success]
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=bool(rows) and not failing,
                severity=dg.AssetCheckSeverity.ERROR
                if severity == "critical"
                else dg.AssetCheckSeverity.WARN,
                metadata={
                    "severity": severity,
                    "sites_failing": [c.site_id or "all" for c in failing],
                    "unexpected_rows": sum(c.unexpected_count or 0 for c in failing),
                    "quality_run": latest.run_id if latest else "none",
                },
            )

    return [quality_checks]


def _table_specs(
    tables: Sequence[Table], *, deps: Sequence[dg.AssetKey], skippable: bool = False
) -> list[dg.AssetSpec]:
    """One asset per table of a layer (its run log excepted), with columns as metadata."""
    return [
        dg.AssetSpec(
            key=dg.AssetKey([table.schema or "main", table.name]),
            group_name=table.schema,
            deps=list(deps),
            skippable=skippable,
            kinds={"duckdb"},
            description=markdown_text(table.comment),
            metadata={"dagster/column_schema": _column_schema(table)},
        )
        for table in tables
        if table.name not in RUN_LOGS
    ]


def markdown_text(text: str | None) -> str | None:
    """Plain text for the Dagster UI, which renders descriptions as Markdown: a placeholder
    such as <SITE> would be eaten as an HTML tag and * or _ taken for emphasis."""
    if text is None:
        return None
    return html.escape(text, quote=False).replace("*", "\\*").replace("_", "\\_")


def _column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, str(c.type), description=markdown_text(c.comment))
            for c in table.columns
        ]
    )


def build_definitions(
    config: Config, *, retries: bool = True, checks_last: bool = False
) -> dg.Definitions:
    """Everything from one configuration: a new site brings its partition, nightly schedule and
    drop sensor. Runs use the multiprocess executor (a step a process); the warehouse pool keeps
    the working database to one writer. `retries=False`, `checks_last=True`: the command line's
    runs, which report a failed site at once and run the asset checks after the report."""
    assets = build_assets(config, retries=retries)
    freshness = build_freshness_check(config, last=checks_last)
    jobs = build_jobs(freshness)
    schedules, sensors = build_automation(config, jobs)
    return dg.Definitions(
        assets=assets,
        asset_checks=[
            *build_quality_checks({k for a in assets for k in a.keys}, last=checks_last),
            freshness,
        ],
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={"rescue": RescueConfig(config_path=str(config.path.resolve()))},
        executor=dg.multiprocess_executor,
    )


def load_job(config_path: str, name: str) -> dg.JobDefinition:
    """A job of the definitions built from `config_path`: the reconstructor that
    `reconstructable_job` names, so step processes rebuild the same job."""
    return build_definitions(load_config(config_path)).resolve_job_def(name)


def reconstructable_job(config_path: str | Path, name: str) -> ReconstructableJob:
    """A job that `dg.execute_job` can run with the multiprocess executor outside the daemon
    (scripts, tests)."""
    return dg.build_reconstructable_job(
        "rescue_pipeline.dagster_defs.definitions",
        "load_job",
        # Dagster's annotation says tuple[object]; any tuple of picklable values works.
        reconstructable_args=(str(Path(config_path).resolve()), name),  # type: ignore[arg-type]
    )


def configured_path() -> Path:
    """The code location's sites.yaml: RESCUE_CONFIG, never a guess (a UI showing another
    study's configuration is worse than one that says what is missing)."""
    value = Environment.current().config_path
    if value:
        return Path(value)
    raise ConfigError(
        f"set {CONFIG_ENV} to the sites.yaml this code location runs "
        "(`rescue demo` writes rescue-demo/sites.yaml)"
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config(configured_path()))
