"""The official SQL on FHIR v2 test cases (tests/data/sql_on_fhir, MIT) run against our compiler.

Every case runs on a real DuckDB table shaped like raw.fhir_resources. A case the compiler does
not support is listed in UNSUPPORTED with the reason and skipped by name; test_unsupported_still_fails
checks that each listed case still fails, so the list shrinks when support grows.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rescue_pipeline.viewdef import UnsupportedFeature, ViewError, compile_view

DATA = Path(__file__).parents[1] / "data" / "sql_on_fhir"

UNSUPPORTED: dict[str, str] = {
    **{
        f"fn_boundary.json::{t}": "lowBoundary()/highBoundary() are not supported"
        for t in (
            "decimal lowBoundary",
            "decimal highBoundary",
            "datetime lowBoundary",
            "datetime highBoundary",
            "date lowBoundary",
            "date highBoundary",
            "time lowBoundary",
            "time highBoundary",
        )
    },
    **{
        f"repeat.json::{t}": "select.repeat (recursive traversal) is not supported"
        for t in (
            "basic",
            "item and answer.item",
            "empty expression",
            "empty child expression",
            "combined with forEach",
            "combined with forEachOrNull",
            "combined with unionAll",
        )
    },
    "row_index.json::%rowIndex with repeat": "select.repeat (recursive traversal) is not supported",
}


def _files() -> list[Path]:
    return sorted(p for p in DATA.glob("*.json") if p.name != "tests.schema.json")


def _cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for path in _files():
        suite = json.loads(path.read_text())
        for case in suite["tests"]:
            out.append((f"{path.name}::{case['title']}", suite, case))
    return out


CASES = _cases()


def _connection(resources: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    con.execute(
        "CREATE TABLE raw.fhir_resources (site_id VARCHAR, resource_type VARCHAR,"
        " resource_id VARCHAR, payload JSON)"
    )
    con.executemany(
        "INSERT INTO raw.fhir_resources VALUES (?, ?, ?, ?)",
        [("site-t", r["resourceType"], r.get("id"), json.dumps(r)) for r in resources],
    )
    return con


def _norm(value: Any) -> Any:
    """JSON-equality: 1 == 1.0, lists compared in order, dicts by key."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return ("num", round(float(value), 9)) if math.isfinite(value) else ("num", value)
    if isinstance(value, list | tuple):
        return tuple(_norm(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _norm(v)) for k, v in value.items()))
    return value


def run_view(suite: dict[str, Any], view: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Compile and run ``view`` over the suite's resources: (columns without site_id, rows)."""
    con = _connection(suite["resources"])
    sql = compile_view(view)
    cur = con.execute(sql)
    columns = [d[0] for d in cur.description]
    assert columns[0] == "site_id", "the passthrough column comes first"
    rows = [dict(zip(columns[1:], row[1:], strict=True)) for row in cur.fetchall()]
    return columns[1:], rows


def outcome(suite: dict[str, Any], case: dict[str, Any]) -> str:
    """'pass', 'unsupported: ...' or 'fail: ...' for one case."""
    try:
        columns, rows = run_view(suite, case["view"])
    except UnsupportedFeature as exc:
        return f"unsupported: {exc}"
    except (ViewError, duckdb.Error) as exc:
        return "pass" if case.get("expectError") else f"fail: {type(exc).__name__}: {exc}"
    if case.get("expectError"):
        return "fail: expected an error"
    expected = case["expect"]
    if "expectColumns" in case and columns != case["expectColumns"]:
        return f"fail: columns {columns} != {case['expectColumns']}"
    if expected and set(columns) != set(expected[0]):
        return f"fail: columns {columns} != {list(expected[0])}"
    got = Counter(_norm(r) for r in rows)
    want = Counter(_norm({c: r.get(c) for c in columns}) for r in expected)
    if got != want:
        return f"fail: rows {rows} != {expected}"
    return "pass"


@pytest.mark.parametrize(("case_id", "suite", "case"), CASES, ids=[c[0] for c in CASES])
def test_official_case(case_id: str, suite: dict[str, Any], case: dict[str, Any]) -> None:
    if case_id in UNSUPPORTED:
        pytest.skip(f"unsupported: {UNSUPPORTED[case_id]}")
    result = outcome(suite, case)
    assert result == "pass", result


def test_unsupported_still_fails() -> None:
    """Every listed skip names a real case that is still unsupported (or still fails)."""
    by_id = {case_id: (suite, case) for case_id, suite, case in CASES}
    for case_id in UNSUPPORTED:
        assert case_id in by_id, f"{case_id} is not an official case"
        result = outcome(*by_id[case_id])
        assert result != "pass", f"{case_id} passes now: remove it from UNSUPPORTED"


def test_print_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Pass / skip counts per file (run with -s to see them)."""
    counts: dict[str, Counter[str]] = {}
    for case_id, suite, case in CASES:
        file = case_id.split("::")[0]
        status = "skipped" if case_id in UNSUPPORTED else outcome(suite, case).split(":")[0]
        counts.setdefault(file, Counter())[status] += 1
    with capsys.disabled():
        print()
        for file, c in counts.items():
            print(f"{file:24} pass {c['pass']:3}  skipped {c['skipped']:3}  fail {c['fail']:3}")
    assert all(c["fail"] == 0 and c["unsupported"] == 0 for c in counts.values())
