"""Run the expectation suites shipped beside this module with Great Expectations, per site.

Each suite is a JSON file here (`<layer>.<table>.json`): the DuckDB query that computes its
frame, and its expectations, each with a stable id (`ca125_units_known`) that names the Dagster
check and keys its results in quality.results. The suites' sha256 is recorded with every run.

GE's SQL datasource fails quietly on DuckDB (DEPENDENCY-FACTS.md), so each suite names the
DuckDB query that computes its frame (keys and derived flags; DuckDB does the heavy work) and
GE validates that frame through its pandas route. An expectation whose run raised is a failure
with the error shown, never a pass. Results keep only keys of failing rows (resource ids,
usubjid), never their values, so quality.results carries no PHI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from rescue_pipeline.raw.structure import REASONS

SAMPLE_KEYS = 5
_ID = re.compile(r"[a-z][a-z0-9_]{2,62}")


@dataclass(frozen=True)
class Suite:
    name: str
    layer: str
    table: str
    query: str
    key: str
    expectations: tuple[dict[str, Any], ...]


class SuiteError(ValueError):
    """A suite file that cannot be used: the file and what is wrong with it."""


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
    check_id: str | None = None  # the expectation's stable id
    suites_sha256: str | None = None  # of the suites this run used
    # Every failing row's key (the site's data queries); not a quality.results column.
    failing_keys: tuple[str, ...] = ()


def suites_folder() -> Path:
    """Where the suites are: this package's own folder (installed with it)."""
    return Path(__file__).resolve().parent


def suites_sha256(folder: Path | None = None) -> str:
    """sha256 over every suite file (name and bytes): which gate a run was checked by."""
    digest = hashlib.sha256()
    for path in sorted((folder or suites_folder()).glob("*.json")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def load_suites(folder: Path | None = None) -> list[Suite]:
    folder = folder or suites_folder()
    suites = []
    seen: set[str] = set()
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text("utf-8"))
        meta = doc["meta"]
        for expectation in doc["expectations"]:
            check_id = expectation.get("id")
            if not isinstance(check_id, str) or not _ID.fullmatch(check_id):
                raise SuiteError(f"{path.name}: an expectation has no id of a-z, 0-9 and _")
            if check_id in seen:
                raise SuiteError(f"{path.name}: id {check_id} is used twice")
            seen.add(check_id)
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
    digest: str | None = None,
) -> list[CheckResult]:
    """Every suite over its frame, once per site; results in suite, site, expectation order.

    `sites` (the configured ones) each get a result even when a frame has no row of theirs: a
    suite whose query keeps only suspect rows (DuckDB narrowing millions of rows to the few
    that can fail) then still says that the site passed. `digest` (the suites' sha256) is
    recorded with every result.
    """
    import great_expectations as gx  # 3 s to import: only the quality step pays for it

    run_id = run_id or uuid.uuid4().hex[:12]
    checked_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # No progress bars: they are not ours to print, and a closed stdout (a pipe to `head`)
    # would turn every check into a "Broken pipe" failure.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("rescue")
    out: list[CheckResult] = []
    for suite in suites:
        try:
            needed = {k: v for k, v in params.items() if f"${k}" in suite.query}
            frame = con.execute(suite.query, needed or None).df()
        except duckdb.Error as exc:
            out += [
                _failed(run_id, None, suite, e, f"query failed: {exc}", checked_at, digest)
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
                out.append(_result(run_id, site, suite, expectation, r, checked_at, digest))
    return out


def _result(
    run_id: str,
    site: str | None,
    suite: Suite,
    e: dict[str, Any],
    r: Any,
    checked_at: str,
    digest: str | None,
) -> CheckResult:
    message = _raised(r.exception_info)
    if message is not None:
        return _failed(run_id, site, suite, e, message, checked_at, digest)
    details = r.result or {}
    # sorted: the sample is then the same whatever order DuckDB handed the rows over in
    keys = sorted(
        str(row.get(suite.key) if isinstance(row, dict) else row)
        for row in details.get("unexpected_index_list") or []
    )
    observed = details.get("observed_value")
    if observed is None and details.get("element_count") is not None:
        # a row-by-row expectation has no single observed value: say what it saw
        rows, bad = int(details["element_count"]), int(details.get("unexpected_count") or 0)
        observed = (
            f"{bad:,} of {rows:,} rows unexpected" if bad else f"all {rows:,} rows as expected"
        )
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
        check_id=e["id"],
        suites_sha256=digest,
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
    run_id: str,
    site: str | None,
    suite: Suite,
    e: dict[str, Any],
    message: str,
    checked_at: str,
    digest: str | None,
) -> CheckResult:
    return CheckResult(
        run_id, site, suite.layer, suite.table, e["type"], e.get("meta", {}).get("description", ""),
        e.get("meta", {}).get("severity", "warning"), False, message.splitlines()[0][:500], None,
        None, checked_at, e["id"], digest,
    )  # fmt: skip
