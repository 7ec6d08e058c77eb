"""No statement of the core build or the analysis multiplies rows, whatever the data.

Each statement is profiled by DuckDB (EXPLAIN ANALYZE's numbers) while the real build runs in
its transaction, on a clean and a faulty cohort at two sizes. A join of two relations that share
only `site_id` (a cross product per site) makes an intermediate result far larger than what the
statement read, and the gap grows with the cohort: on 5,000 clean patients such a join once took
the build from seconds to minutes and 5 GB. Clean data matter as much as faulty: the plans
differ with the data.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import cast

import duckdb
import pytest

from rescue_pipeline.analysis.build import derive_analysis
from rescue_pipeline.config import load_config
from rescue_pipeline.core.build import build_core
from rescue_pipeline.site_load import load_site, work_db
from rescue_pipeline.synth import generate
from rescue_pipeline.warehouse.plans import ProfiledConnection, StatementPlan
from tests.cohort import KEY, TODAY

# An operator may hold a little more than a row per row read (lists unnested: codings, code
# prefixes; 1.14 at most today); a join that multiplies rows soon holds many.
MAX_FANOUT = 2.0
# From the small to the large cohort (4x the patients) a statement's fanout moves a little with
# the data (1.19x at most today); a per-site cross product's grows with the patients per site
# (2.1x for the one this test was written against, at these sizes).
MAX_GROWTH = 1.3
SIZES = {"small": 120, "large": 480}

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _profile(folder: Path, patients: int, fault_rate: float) -> list[StatementPlan]:
    generate(folder, patients=patients, sites=3, seed=23, fault_rate=fault_rate)
    config = load_config(folder / "sites.yaml")
    for site in config.sites:
        load_site(config, site)
    with work_db(config) as con:
        profiled = ProfiledConnection(con)
        build_core(cast(duckdb.DuckDBPyConnection, profiled), config, key=KEY, today=TODAY)
        derive_analysis(cast(duckdb.DuckDBPyConnection, profiled), config, today=TODAY)
    return profiled.plans


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], list[StatementPlan]]:
    out = {}
    for flavour, rate in (("clean", 0.0), ("faulty", 0.05)):
        for size, patients in SIZES.items():
            folder = tmp_path_factory.mktemp(f"{flavour}-{size}")
            out[(flavour, size)] = _profile(folder, patients, rate)
    return out


def _keyed(plans: list[StatementPlan]) -> dict[tuple[str, int], StatementPlan]:
    """Each statement by its label and how many times that label came before."""
    seen: Counter[str] = Counter()
    out = {}
    for plan in plans:
        out[(plan.label, seen[plan.label])] = plan
        seen[plan.label] += 1
    return out


def _describe(plan: StatementPlan) -> str:
    on = f" on {', '.join(plan.join_conditions)}" if plan.join_conditions else ""
    return (
        f"{plan.label}: {plan.peak_rows} rows at {plan.peak_operator}{on} "
        f"from {plan.input_rows} read"
    )


@pytest.mark.parametrize("flavour", ["clean", "faulty"])
@pytest.mark.parametrize("size", list(SIZES))
def test_no_statement_holds_more_rows_than_a_few_per_row_read(
    plans: dict[tuple[str, str], list[StatementPlan]], flavour: str, size: str
) -> None:
    profiled = plans[(flavour, size)]
    assert len(profiled) > 60  # the build and the derivation were profiled, not skipped
    assert sum(p.input_rows for p in profiled) > 10_000
    multiplying = [_describe(p) for p in profiled if p.peak_rows > MAX_FANOUT * p.input_rows + 100]
    assert multiplying == []


@pytest.mark.parametrize("flavour", ["clean", "faulty"])
def test_no_statement_grows_faster_than_its_input(
    plans: dict[tuple[str, str], list[StatementPlan]], flavour: str
) -> None:
    small, large = _keyed(plans[(flavour, "small")]), _keyed(plans[(flavour, "large")])
    shared = small.keys() & large.keys()
    assert len(shared) > 60
    growing = [
        f"{_describe(large[k])} (fanout {small[k].fanout:.2f} -> {large[k].fanout:.2f})"
        for k in sorted(shared)
        if large[k].input_rows > 1000 and large[k].fanout > MAX_GROWTH * small[k].fanout + 0.1
    ]
    assert growing == []


def test_the_profile_sees_a_join_that_multiplies_rows(tmp_path: Path) -> None:
    """The measure itself: two tables joined on site_id alone show as a fanout in the hundreds."""
    con = duckdb.connect(str(tmp_path / "probe.duckdb"))
    profiled = ProfiledConnection(con)
    profiled.execute(
        "CREATE TABLE r AS SELECT 'site-' || (range % 3) AS site_id, range AS id FROM range(900)"
    )
    profiled.execute("CREATE TABLE j AS SELECT * FROM r a JOIN r b USING (site_id)")
    profiled.execute("CREATE TABLE k AS SELECT * FROM r a JOIN r b USING (site_id, id)")
    by_label = {p.label: p for p in profiled.plans}
    assert by_label["CREATE j"].peak_rows == 3 * 300 * 300
    assert by_label["CREATE j"].fanout > 100
    assert by_label["CREATE j"].join_conditions == ("site_id = site_id",)
    assert by_label["CREATE k"].fanout == pytest.approx(0.5)  # 900 rows out of 1,800 read
    con.close()
