"""What a suite is and what checking it gives: shared by the step that computes the suites'
frames and the process that runs Great Expectations over them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SAMPLE_KEYS = 5


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


@dataclass(frozen=True)
class Stamp:
    """What every result of one quality run carries: its id, when it checked, the suites'
    sha256; and the call of run_suites it belongs to (GE's names are unique per call)."""

    run_id: str
    checked_at: str
    digest: str | None
    call: str


def failed(
    suite: Suite, site: str | None, e: dict[str, Any], message: str, stamp: Stamp
) -> CheckResult:
    """A check that could not be run (its query or its expectation raised): a failure with the
    error's first line, never a pass."""
    meta = e.get("meta", {})
    return CheckResult(
        stamp.run_id, site, suite.layer, suite.table, e["type"], meta.get("description", ""),
        meta.get("severity", "warning"), False, message.splitlines()[0][:500], None, None,
        stamp.checked_at, e["id"], stamp.digest,
    )  # fmt: skip
