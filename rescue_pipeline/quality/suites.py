"""Run the expectation suites in `expectations/` with Great Expectations, per site.

GE's SQL datasource fails quietly on DuckDB (DEPENDENCY-FACTS.md), so each suite names the
DuckDB query that computes its frame (keys and derived flags; DuckDB does the heavy work) and
GE validates that frame through its pandas route. An expectation whose run raised is a failure
with the error shown, never a pass. Results keep only keys of failing rows (resource ids,
usubjid), never their values, so quality.results carries no PHI.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from rescue_pipeline.raw.structure import REASONS

EXPECTATIONS_ENV = "RESCUE_EXPECTATIONS"
SAMPLE_KEYS = 5


@dataclass(frozen=True)
class Suite:
    name: str
    layer: str
    table: str
    query: str
    key: str
    expectations: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CheckResult:
    run_id: str
    site_id: str | None
    layer: str
    table_name: str
    expectation: str
    description: str
    severity: str
    success: bool
    observed_value: str | None
    unexpected_count: int | None
    sample_keys: str | None
    checked_at: str
    # Every failing row's key (the site's data queries); not a quality.results column.
    failing_keys: tuple[str, ...] = ()


def expectations_folder() -> Path:
    """`expectations/` of the repository (RESCUE_EXPECTATIONS overrides)."""
    override = os.environ.get(EXPECTATIONS_ENV)
    return Path(override) if override else Path(__file__).resolve().parents[2] / "expectations"


def load_suites(folder: Path | None = None) -> list[Suite]:
    folder = folder or expectations_folder()
    suites = []
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text("utf-8"))
        meta = doc["meta"]
        suites.append(
            Suite(
                doc["name"], meta["layer"], meta["table"], meta["query"], meta["key"],
                tuple(doc["expectations"]),
            )
        )  # fmt: skip
    if not suites:
        raise FileNotFoundError(f"no expectation suites in {folder}")
    return suites


def _kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Placeholders a JSON file cannot hold: $REASONS is the landing's reason codes."""
    return {k: sorted(REASONS) if v == "$REASONS" else v for k, v in kwargs.items()}


def run_suites(
    con: duckdb.DuckDBPyConnection,
    suites: list[Suite],
    *,
    params: Mapping[str, Any],
    run_id: str | None = None,
    sites: Sequence[str] = (),
) -> list[CheckResult]:
    """Every suite over its frame, once per site; results in suite, site, expectation order.

    `sites` (the configured ones) each get a result even when a frame has no row of theirs: a
    suite whose query keeps only suspect rows (DuckDB narrowing millions of rows to the few
    that can fail) then still says that the site passed.
    """
    import great_expectations as gx  # 3 s to import: only the quality step pays for it

    run_id = run_id or uuid.uuid4().hex[:12]
    checked_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("rescue")
    out: list[CheckResult] = []
    for suite in suites:
        try:
            needed = {k: v for k, v in params.items() if f"${k}" in suite.query}
            frame = con.execute(suite.query, needed or None).df()
        except duckdb.Error as exc:
            out += [
                _failed(run_id, None, suite, e, f"query failed: {exc}", checked_at)
                for e in suite.expectations
            ]
            continue
        asset = source.add_dataframe_asset(suite.name)
        batch_definition = asset.add_batch_definition_whole_dataframe("all")
        ge_suite = gx.ExpectationSuite(name=suite.name)
        for e in suite.expectations:
            config = gx.expectations.expectation_configuration.ExpectationConfiguration(
                type=e["type"], kwargs=_kwargs(e["kwargs"]), meta=e.get("meta", {})
            )
            ge_suite.add_expectation_configuration(config)
        ge_suite = context.suites.add(ge_suite)
        present = set(frame["site_id"].dropna().unique()) if len(frame) else set()
        per_site: list[str | None] = sorted(present | set(sites))
        for site in per_site or [None]:
            part = frame if site is None else frame[frame["site_id"] == site]
            batch = batch_definition.get_batch(batch_parameters={"dataframe": part})
            result = batch.validate(
                ge_suite,
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [suite.key],
                },
            )
            for expectation, r in zip(suite.expectations, result.results, strict=True):
                out.append(_result(run_id, site, suite, expectation, r, checked_at))
    return out


def _result(
    run_id: str, site: str | None, suite: Suite, e: dict[str, Any], r: Any, checked_at: str
) -> CheckResult:
    message = _raised(r.exception_info)
    if message is not None:
        return _failed(run_id, site, suite, e, message, checked_at)
    details = r.result or {}
    # sorted: the sample is then the same whatever order DuckDB handed the rows over in
    keys = sorted(
        str(row.get(suite.key) if isinstance(row, dict) else row)
        for row in details.get("unexpected_index_list") or []
    )
    observed = details.get("observed_value")
    return CheckResult(
        run_id=run_id,
        site_id=site,
        layer=suite.layer,
        table_name=suite.table,
        expectation=e["type"],
        description=e.get("meta", {}).get("description", ""),
        severity=e.get("meta", {}).get("severity", "warning"),
        success=bool(r.success),
        observed_value=None if observed is None else str(observed)[:200],
        unexpected_count=details.get("unexpected_count"),
        sample_keys=",".join(keys[:SAMPLE_KEYS]) or None,
        checked_at=checked_at,
        failing_keys=tuple(keys) if not r.success else (),
    )


def _raised(info: Any) -> str | None:
    """The error a check raised, if it did. GE keeps it either at the top level or per metric
    ({metric id: {raised_exception, exception_message, ...}}); both shapes are read."""
    if not isinstance(info, dict):
        return None
    entries = [info, *(v for v in info.values() if isinstance(v, dict))]
    for entry in entries:
        if entry.get("raised_exception") or entry.get("exception_message"):
            return str(entry.get("exception_message") or "the check raised an error")
    return None


def _failed(
    run_id: str, site: str | None, suite: Suite, e: dict[str, Any], message: str, checked_at: str
) -> CheckResult:
    return CheckResult(
        run_id, site, suite.layer, suite.table, e["type"], e.get("meta", {}).get("description", ""),
        e.get("meta", {}).get("severity", "warning"), False, message.splitlines()[0][:500], None,
        None, checked_at,
    )  # fmt: skip
