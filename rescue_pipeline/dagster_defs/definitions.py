"""Dagster wiring: assets call the layers' functions and report metadata; nothing is computed here.

`build_definitions(config)` builds everything from one configuration, so a new site in
sites.yaml brings its partition with no code change. `defs` is what `dagster dev` and
`dagster definitions validate` load (workspace.yaml): it reads the configuration named by
RESCUE_CONFIG when the code location loads, never at import.
"""

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy import Table

from rescue_pipeline.config import CONFIG_ENV, Config, ConfigError, load_config
from rescue_pipeline.quality.gate import QualityResult
from rescue_pipeline.quality.suites import CheckResult, load_suites
from rescue_pipeline.report.render import write_report as write_sponsors_report
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

RAW_RESOURCES = dg.AssetKey(["raw", "fhir_resources"])
RAW_VALIDATION = dg.AssetKey(["raw", "version_validation"])
PUBLISHED = dg.AssetKey(["warehouse", "published"])
QUALITY = dg.AssetKey(["quality", "results"])
REPORT = dg.AssetKey(["report", "sponsors"])
RUN_LOGS = frozenset({"build_runs", "derivation_runs"})  # a layer's own log, not an asset
DEMO_CONFIG = Path("rescue-demo") / "sites.yaml"


class RescueConfig(dg.ConfigurableResource):
    """Where the pipeline's configuration lives; read once per run."""

    config_path: str

    def load(self) -> Config:
        return load_config(self.config_path)


def site_partitions(config: Config) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([site.id for site in config.sites])


def build_assets(config: Config) -> list[dg.AssetsDefinition]:
    partitions = site_partitions(config)

    @dg.asset(
        key=RAW_RESOURCES,
        group_name="raw",
        partitions_def=partitions,
        kinds={"duckdb"},
        description=(
            "Every FHIR resource a site sent, landed as distinct versions "
            "(raw.fhir_resource_versions / raw.fhir_resources); lines that fail the structural "
            "checks go to raw.quarantine."
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
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> dg.MaterializeResult:
        cfg = rescue.load()
        site = cfg.site(context.partition_key)
        result = load_site(cfg, site)
        total = result.total()
        with work_db(cfg) as con:
            mismatched = con.execute(
                "SELECT resource_type FROM raw.loads "
                "WHERE load_id = ? AND received <> accepted + quarantined",
                [result.load_id],
            ).fetchall()
        return dg.MaterializeResult(
            metadata={
                "load_id": result.load_id,
                "received": total.received,
                "accepted": total.accepted,
                "quarantined": total.quarantined,
                "new_versions": total.new_versions,
                "files_read": result.files_read,
                "files_unchanged": result.files_unchanged,
                "seconds": round(result.seconds, 2),
                "quarantine_reasons": dict(result.reasons),
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
        partitions_def=partitions,
        deps=[RAW_RESOURCES],
        kinds={"duckdb"},
        description=(
            "Full FHIR validation (fhir.resources R4B models) of each new version, once, "
            "beside the landing: findings are recorded, resources are never moved."
        ),
    )
    def raw_version_validation(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> dg.MaterializeResult:
        result = validate_site(rescue.load(), context.partition_key)
        return dg.MaterializeResult(
            metadata={
                "validated": result.validated,
                "outcomes": dict(result.outcomes),
                "resources_per_second": round(result.per_second, 1),
            }
        )

    core_specs = _table_specs(CORE_TABLES, deps=[RAW_RESOURCES])

    @dg.multi_asset(specs=core_specs, name="core_tables")
    def core_tables(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> Iterator[dg.MaterializeResult]:
        result = build_core_layer(rescue.load())
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

    @dg.multi_asset(specs=analysis_specs, name="analysis_tables")
    def analysis_tables(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> Iterator[dg.MaterializeResult]:
        result = derive_analysis_layer(rescue.load())
        for spec in analysis_specs:
            yield dg.MaterializeResult(
                asset_key=spec.key,
                metadata={
                    "dagster/row_count": result.rows.get(spec.key.path[-1], 0),
                    "eligible": result.eligible,
                    "pfs": result.pfs,
                },
            )

    @dg.asset(
        key=QUALITY,
        group_name="quality",
        deps=[RAW_RESOURCES, *(spec.key for spec in core_specs), *(s.key for s in analysis_specs)],
        kinds={"duckdb"},
        description="Great Expectations suites (expectations/*.json) over raw, core and analysis.",
    )
    def quality_results(rescue: RescueConfig) -> dg.MaterializeResult:
        result = check_quality(rescue.load())
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
        description=(
            "The published warehouse (core and analysis, never raw): built beside the published "
            "file and renamed over it, so readers never see a half-written load."
        ),
    )
    def published_warehouse(
        context: dg.AssetExecutionContext, rescue: RescueConfig
    ) -> dg.MaterializeResult:
        config = rescue.load()
        with work_db(config, read_only=True) as con:
            latest = _latest_quality(con)
        result = publish_warehouse(config, latest)
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
    def sponsors_report(rescue: RescueConfig) -> dg.MaterializeResult:
        config = rescue.load()
        files = write_sponsors_report(
            config.warehouse, config.report_dir, study_id=config.study_id,
            site_ids=[s.id for s in config.sites],
        )  # fmt: skip
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


def build_quality_checks(table_keys: set[dg.AssetKey]) -> list[dg.AssetChecksDefinition]:
    """Each expectation of a core or analysis suite, as an asset check on the table it covers.

    The suites run once in quality/results (per site, into quality.results); the checks read
    that run back, so the UI shows pass/fail, the failing sites and row counts on each table.
    """
    specs: list[dg.AssetCheckSpec] = []
    wanted: dict[tuple[str, str], tuple[str, str, str]] = {}
    for suite in load_suites():
        key = dg.AssetKey(suite.table.split("."))
        if key not in table_keys:
            continue  # raw suites (site-partitioned assets) and cross-table ones stay in metadata
        for i, expectation in enumerate(suite.expectations, start=1):
            meta = expectation.get("meta", {})
            name = re.sub(r"[^a-z0-9_]", "_", f"{suite.name}_{i}".lower())
            specs.append(
                dg.AssetCheckSpec(
                    name, asset=key, description=meta.get("description"), additional_deps=[QUALITY]
                )
            )
            wanted[(key.to_user_string(), name)] = (
                suite.table,
                meta.get("description", ""),
                meta.get("severity", "warning"),
            )
    if not specs:
        return []

    @dg.multi_asset_check(specs=specs, name="quality_checks", can_subset=True)
    def quality_checks(
        context: dg.AssetCheckExecutionContext, rescue: RescueConfig
    ) -> Iterator[dg.AssetCheckResult]:
        with work_db(rescue.load(), read_only=True) as con:
            latest = _latest_quality(con)
        checks = latest.checks if latest else []
        for check_key in context.selected_asset_check_keys:
            table, description, severity = wanted[
                (check_key.asset_key.to_user_string(), check_key.name)
            ]
            rows = [c for c in checks if c.table_name == table and c.description == description]
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


def _latest_quality(con: Any) -> QualityResult | None:
    """The latest quality run's results, read back from quality.results."""
    rows = con.execute(
        "SELECT * FROM quality.results WHERE run_id = "
        "(SELECT arg_max(run_id, checked_at) FROM quality.results)"
    ).fetchall()
    if not rows:
        return None
    checks = [CheckResult(*row) for row in rows]
    return QualityResult(checks[0].run_id, checks)


def _table_specs(tables: Sequence[Table], *, deps: Sequence[dg.AssetKey]) -> list[dg.AssetSpec]:
    """One asset per table of a layer (its run log excepted), with columns as metadata."""
    return [
        dg.AssetSpec(
            key=dg.AssetKey([table.schema or "main", table.name]),
            group_name=table.schema,
            deps=list(deps),
            kinds={"duckdb"},
            description=table.comment,
            metadata={"dagster/column_schema": _column_schema(table)},
        )
        for table in tables
        if table.name not in RUN_LOGS
    ]


def _column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(c.name, str(c.type), description=c.comment) for c in table.columns]
    )


def build_definitions(config: Config) -> dg.Definitions:
    assets = build_assets(config)
    return dg.Definitions(
        assets=assets,
        asset_checks=build_quality_checks({k for a in assets for k in a.keys}),
        resources={"rescue": RescueConfig(config_path=str(config.path.resolve()))},
    )


def configured_path() -> Path:
    value = os.environ.get(CONFIG_ENV)
    if value:
        return Path(value)
    if DEMO_CONFIG.exists():
        return DEMO_CONFIG
    raise ConfigError(
        f"set {CONFIG_ENV} to a sites.yaml (or run `rescue demo` here to create {DEMO_CONFIG})"
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config(configured_path()))
