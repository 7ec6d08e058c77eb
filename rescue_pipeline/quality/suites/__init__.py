"""Run the expectation suites shipped beside this module with Great Expectations, per site.

Each suite is a JSON file here (`<layer>.<table>.json`): the DuckDB query that computes its
frame, and its expectations, each with a stable id (`ca125_units_known`) that names the Dagster
check and keys its results in quality.results. The suites' sha256 is recorded with every run.

GE's SQL datasource fails quietly on DuckDB, so each suite names the DuckDB query that
computes its frame (keys and derived flags; DuckDB does the heavy work) and GE validates that
frame through its pandas route, in the quality worker (`worker.py`). An expectation whose run
raised is a failure with the error shown, never a pass. Results keep only keys of failing rows
(resource ids, usubjid), never their values, so quality.results carries no PHI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from rescue_pipeline.quality.suites import worker
from rescue_pipeline.quality.suites.model import (
    SAMPLE_KEYS,
    CheckResult,
    Stamp,
    Suite,
    SuiteError,
    failed,
)
from rescue_pipeline.warehouse.no_space import no_space
from rescue_pipeline.warehouse.statements import duckdb_first_line

if TYPE_CHECKING:  # pandas takes 0.4 s to import; here it only names a type
    import pandas as pd

__all__ = [
    "SAMPLE_KEYS",
    "CheckResult",
    "Suite",
    "SuiteError",
    "load_suites",
    "run_suites",
    "suites_folder",
    "suites_sha256",
]

IN_FLIGHT = 2  # frames computed and not yet checked: memory stays bounded
_ID = re.compile(r"[a-z][a-z0-9_]{2,62}")


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
    recorded with every result. DuckDB computes each frame here; Great Expectations checks it in
    the quality worker while the next frame is computed (a few frames in flight at most).
    """
    stamp = Stamp(
        run_id or uuid.uuid4().hex[:12],
        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        digest,
        uuid.uuid4().hex,
    )
    pending: deque[Callable[[], list[CheckResult]]] = deque()
    out: list[CheckResult] = []
    for suite in suites:
        needed = {k: v for k, v in params.items() if f"${k}" in suite.query}
        again = partial(_frame, con, suite, needed)
        try:
            frame = again()
        except duckdb.Error as exc:
            if _machine_fault(exc):  # about this machine or DuckDB, not the data: the step fails
                raise
            message = f"query failed: {exc}"
            known = [failed(suite, None, e, message, stamp) for e in suite.expectations]
            pending.append(partial(list, known))
        else:
            pending.append(worker.submit(suite, frame, sites, stamp, again))
            del frame  # the worker has it
        if len(pending) >= IN_FLIGHT:
            out += pending.popleft()()
    while pending:
        out += pending.popleft()()
    return out


class SuiteOutOfMemory(RuntimeError):
    """A suite's query ran out of memory: the quality step fails and says which suite, rather
    than record it as a failed check (a finding about the data, that would refuse the
    publish, and move the raw checks' "since" past versions never checked)."""


def _machine_fault(exc: duckdb.Error) -> bool:
    """Errors of this machine or of DuckDB itself (a full disk, a broken file, an internal
    error), which say nothing about the data a suite reads."""
    faults = (duckdb.FatalException, duckdb.InternalException, duckdb.IOException)
    return isinstance(exc, faults) or no_space(exc) is not None


def _frame(con: duckdb.DuckDBPyConnection, suite: Suite, params: dict[str, Any]) -> pd.DataFrame:
    """The suite's frame, here or again when the worker could not check it."""
    try:
        return con.execute(suite.query, params or None).df()
    except duckdb.OutOfMemoryException as exc:
        raise SuiteOutOfMemory(
            f"suite {suite.name}: {duckdb_first_line(exc)} (raise duckdb.memory_limit in "
            "sites.yaml)"
        ) from None
