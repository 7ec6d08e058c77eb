"""Great Expectations over one suite's frame, once per site: the results as CheckResults.

Runs in the quality worker process (`worker.py`), so that GE's import (about 3 s: scipy and its
expectation classes) is paid beside the analysis, not in front of the checks; in the calling
process when there is no worker. The frame is the pandas frame DuckDB's `.df()` made in the
calling process, so both places check the very same data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rescue_pipeline.quality.suites.model import (
    SAMPLE_KEYS,
    CheckResult,
    Stamp,
    Suite,
    failed,
)
from rescue_pipeline.raw.structure import REASONS

if TYPE_CHECKING:  # pandas takes 0.4 s to import; here it only names a type
    import pandas as pd

# The call of run_suites in progress: its token, GE context and datasource, and how many suites
# it has checked (GE's names must be unique in a context, and a suite may come twice).
_CONTEXT: dict[str, Any] = {}


def warm() -> None:
    """Import Great Expectations now, so that the first suite does not wait for it."""
    import great_expectations  # noqa: F401


def _context(call: str) -> tuple[Any, Any, str]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if _CONTEXT.get("call") != call:
        context = gx.get_context(mode="ephemeral")
        # No progress bars: they are not ours to print, and a closed stdout (a pipe to `head`)
        # would turn every check into a "Broken pipe" failure.
        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        _CONTEXT.clear()
        _CONTEXT.update(
            call=call, context=context, source=context.data_sources.add_pandas("rescue"), n=0
        )
    _CONTEXT["n"] += 1
    return _CONTEXT["context"], _CONTEXT["source"], f"{_CONTEXT['n']}"


def _kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Placeholders a JSON file cannot hold: $REASONS is the landing's reason codes."""
    return {k: sorted(REASONS) if v == "$REASONS" else v for k, v in kwargs.items()}


def validate_frame(
    suite: Suite, data: pd.DataFrame, sites: Sequence[str], stamp: Stamp
) -> list[CheckResult]:
    """Every expectation of `suite` over `data`, for each site in it and each of `sites`
    (a site with no row still gets its results); in site, expectation order."""
    import great_expectations as gx

    context, source, n = _context(stamp.call)
    asset = source.add_dataframe_asset(f"{suite.name}.{n}")
    batch_definition = asset.add_batch_definition_whole_dataframe("all")
    ge_suite = gx.ExpectationSuite(name=f"{suite.name}.{n}")
    for e in suite.expectations:
        config = gx.expectations.expectation_configuration.ExpectationConfiguration(
            type=e["type"], kwargs=_kwargs(e["kwargs"]), meta=e.get("meta", {})
        )
        ge_suite.add_expectation_configuration(config)
    ge_suite = context.suites.add(ge_suite)
    present = set(data["site_id"].dropna().unique()) if len(data) else set()
    out: list[CheckResult] = []
    for site in sorted(present | set(sites)) or [None]:
        part = data if site is None else data[data["site_id"] == site]
        batch = batch_definition.get_batch(batch_parameters={"dataframe": part})
        result = batch.validate(
            ge_suite,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [suite.key],
            },
        )
        for expectation, r in zip(suite.expectations, result.results, strict=True):
            out.append(_result(site, suite, expectation, r, stamp))
    return out


def _result(site: str | None, suite: Suite, e: dict[str, Any], r: Any, stamp: Stamp) -> CheckResult:
    message = _raised(r.exception_info)
    if message is not None:
        return failed(suite, site, e, message, stamp)
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
        run_id=stamp.run_id,
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
        checked_at=stamp.checked_at,
        check_id=e["id"],
        suites_sha256=stamp.digest,
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
