"""EXPLAIN ANALYZE every statement of the core build and the analysis derivation on a cohort.

    python bench/explain_plans.py path/to/sites.yaml [--top 25]

The cohort's sites must be landed already (`rescue run` does it). The core layer and the
analysis are rebuilt in the working database exactly as a run builds them, each statement
profiled by DuckDB; prints, slowest first, each statement's seconds, the rows its scans read, the
largest intermediate result and the operator (and join conditions) that made it. A statement
whose peak is many times its input is a join that multiplies rows.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import cast

import duckdb

from rescue_pipeline.analysis.build import derive_analysis
from rescue_pipeline.config import load_config
from rescue_pipeline.core.build import build_core
from rescue_pipeline.core.pseudonym import DEMO_KEY
from rescue_pipeline.site_load import work_db
from rescue_pipeline.warehouse.plans import ProfiledConnection


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--top", type=int, default=25, help="statements to print (slowest)")
    args = parser.parse_args()
    config = load_config(args.config)
    key = os.environ.get("RESCUE_PSEUDONYM_KEY", DEMO_KEY).encode()
    with work_db(config) as con:
        profiled = ProfiledConnection(con)
        build_core(cast(duckdb.DuckDBPyConnection, profiled), config, key=key)
        derive_analysis(cast(duckdb.DuckDBPyConnection, profiled), config)
    plans = sorted(profiled.plans, key=lambda p: p.seconds, reverse=True)
    print(f"{'seconds':>8} {'input':>11} {'peak':>11} {'fanout':>7}  statement / operator")
    for plan in plans[: args.top]:
        joins = f" on {', '.join(plan.join_conditions)}" if plan.join_conditions else ""
        print(
            f"{plan.seconds:8.3f} {plan.input_rows:11,} {plan.peak_rows:11,} "
            f"{plan.fanout:7.2f}  {plan.label} / {plan.peak_operator}{joins}"
        )
    worst = max(profiled.plans, key=lambda p: p.fanout)
    print(f"\nlargest fanout: {worst.fanout:.2f} ({worst.label}, {worst.peak_operator})")
    print(f"{len(profiled.plans)} statements, {sum(p.seconds for p in plans):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
