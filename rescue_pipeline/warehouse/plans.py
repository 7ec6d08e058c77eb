"""What EXPLAIN ANALYZE says of each statement, read without printing it: the rows its scans
produced and the largest intermediate result of its plan.

A statement whose joins are all keyed produces, at every operator, about as many rows as it read
(a few times more where it unnests lists). One whose join order the optimiser picked badly (two
relations sharing only `site_id`, a cross product per site) shows an operator with far more rows
than its input, and the gap widens with the cohort. `ProfiledConnection` records this for every
statement run through it, so a test and a benchmark can look at whole builds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

from rescue_pipeline.warehouse.statements import statement_label

# Operators that only hand rows on to the caller: not intermediate results.
_SINKS = {"RESULT_COLLECTOR", "EXPLAIN_ANALYZE", "QUERY"}


@dataclass(frozen=True)
class StatementPlan:
    label: str  # `INSERT core.surgeries`
    seconds: float
    input_rows: int  # rows produced by the plan's table scans (after the filters pushed into them)
    peak_rows: int  # the most rows any other operator produced
    peak_operator: str
    join_conditions: tuple[str, ...]  # of the operator with the peak, when it is a join

    @property
    def fanout(self) -> float:
        """Peak rows per input row (1.0 for a statement that only reads and writes)."""
        return self.peak_rows / max(self.input_rows, 1)


def _operators(node: dict[str, Any], depth: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    yield depth, node
    for child in node.get("children", ()):
        yield from _operators(child, depth + 1)


def summarise(label: str, seconds: float, profile: dict[str, Any]) -> StatementPlan:
    """A statement's plan in three numbers: input rows, peak rows, and where the peak is."""
    operators = [item for root in profile.get("operator", ()) for item in _operators(root)]
    scans = [op for _, op in operators if op.get("type") == "TABLE_SCAN"]
    others = [
        (depth, op)
        for depth, op in operators
        if op.get("type") != "TABLE_SCAN" and (op.get("type") or "") not in _SINKS
    ]
    # the most rows; among operators with as many, the deepest: the one that made them
    _, peak = max(
        others, key=lambda item: (item[1].get("intermediate_rows", 0), item[0]), default=(0, None)
    )
    conditions = (peak or {}).get("extra_info", {}).get("Conditions", ())
    return StatementPlan(
        label=label,
        seconds=round(seconds, 4),
        input_rows=sum(int(op.get("intermediate_rows", 0)) for op in scans),
        peak_rows=int(peak.get("intermediate_rows", 0)) if peak else 0,
        peak_operator=str(peak.get("name") or peak.get("type")) if peak else "",
        join_conditions=tuple([conditions] if isinstance(conditions, str) else conditions),
    )


class ProfiledConnection:
    """A DuckDB connection that profiles every statement executed through it.

    It stands in for the connection the build and the derivation are given (they call
    `execute`, `sql`, `register`, ...), so the statements are exactly the pipeline's own. Only
    `execute` is profiled: `plans` holds one StatementPlan per executed statement.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.plans: list[StatementPlan] = []
        con.execute("SET enable_profiling = 'no_output'")
        con.execute("SET profiling_mode = 'standard'")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def execute(self, query: Any, parameters: Any = None) -> duckdb.DuckDBPyConnection:
        text = query if isinstance(query, str) else getattr(query, "query", str(query))
        started = time.perf_counter()
        result = (
            self._con.execute(query) if parameters is None else self._con.execute(query, parameters)
        )
        seconds = time.perf_counter() - started
        try:
            profile = json.loads(self._con.get_profiling_information(format="json"))
        except (duckdb.Error, ValueError):
            return result
        if profile.get("query", {}).get("sql", "").strip() != text.strip():
            return result  # no plan of its own (BEGIN, SET): the profile is an earlier one's
        self.plans.append(summarise(statement_label(text), seconds, profile))
        return result
