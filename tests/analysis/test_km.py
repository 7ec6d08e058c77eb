"""Kaplan-Meier first look: numbers checked by hand and against the ADTTE rows themselves."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.analysis.km import MONTH_DAYS, Z95, estimate, kaplan_meier
from rescue_pipeline.warehouse.analysis_tables import ANALYSIS_TABLES
from rescue_pipeline.warehouse.database import ddl

# Eight randomised subjects: (USUBJID, ARM, AVAL days, CNSR).
ROWS = [
    ("S1", "A", 10, 0), ("S2", "A", 20, 1), ("S3", "A", 30, 0), ("S4", "A", 40, 0),
    ("S5", "B", 5, 0), ("S6", "B", 15, 0), ("S7", "B", 15, 1), ("S8", "B", 200, 1),
]  # fmt: skip
ARM_TEXT = {"A": "Surgery + chemotherapy", "B": "Chemotherapy alone"}


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "km.duckdb"))
    con.execute("CREATE SCHEMA analysis")
    for statement in ddl(ANALYSIS_TABLES):
        con.execute(statement)
    start = dt.date(2024, 1, 1)
    for usubjid, arm, aval, cnsr in ROWS:
        con.execute(
            "INSERT INTO analysis.adsl (STUDYID, USUBJID, SUBJID, SITEID, ARMCD, ARM, TRT01P, "
            "RANDDT, RANDFL, ITTFL) VALUES ('RESCUE', ?, ?, 'site-a', ?, ?, ?, ?, 'Y', 'Y')",
            [usubjid, usubjid, arm, ARM_TEXT[arm], ARM_TEXT[arm], start],
        )
        for paramcd in ("PFS", "OS"):
            con.execute(
                "INSERT INTO analysis.adtte (STUDYID, USUBJID, PARAMCD, PARAM, PARAMN, STARTDT, "
                "ADT, AVAL, AVALU, CNSR) VALUES ('RESCUE', ?, ?, ?, ?, ?, ?, ?, 'DAYS', ?)",
                [
                    usubjid,
                    paramcd,
                    paramcd,
                    1 if paramcd == "PFS" else 2,
                    start,
                    start + dt.timedelta(days=aval - 1),
                    aval if paramcd == "PFS" else aval + 1000,
                    cnsr,
                ],
            )
    return con


def test_overall_curve_and_median_by_hand(con, tmp_path):
    # Overall, sorted: 5E 10E 15E 15C 20C 30E 40E 200C (E event, C censored).
    #   t=5:  n=8 (all), d=1  S = 7/8                 = 0.875
    #   t=10: n=7,       d=1  S = 0.875 * 6/7         = 0.75
    #   t=15: n=6 (15,15,20,30,40,200), d=1 (the censoring at 15 is still at risk)
    #                         S = 0.75 * 5/6          = 0.625
    #   t=20: censored only: the curve does not step
    #   t=30: n=3 (30,40,200), d=1  S = 0.625 * 2/3   = 0.416667  <- first S < 0.5: median 30
    #   t=40: n=2 (40,200),    d=1  S = 0.416667 * 1/2 = 0.208333
    result = kaplan_meier(con, out=tmp_path / "km")
    overall = result.groups[0]
    assert overall.name == "Overall" and overall.n == 8 and overall.events == 5
    c = overall.curve
    assert c.times == (5, 10, 15, 30, 40)
    assert c.n_at_risk == (8, 7, 6, 3, 2)
    assert c.events == (1, 1, 1, 1, 1)
    assert c.survival == pytest.approx((7 / 8, 3 / 4, 5 / 8, 5 / 12, 5 / 24))
    assert overall.median_days == 30
    # 95% CI at t=5 by hand: Greenwood sum 1/(8*7); theta = log(-log S); se = sqrt(sum)/|log S|;
    # bounds S ** exp(+-1.96 se).
    se = math.sqrt(1 / 56) / abs(math.log(7 / 8))
    assert c.lower[0] == pytest.approx((7 / 8) ** math.exp(Z95 * se))
    assert c.upper[0] == pytest.approx((7 / 8) ** math.exp(-Z95 * se))
    # Median CI (Brookmeyer-Crowley, complementary log-log): the event times whose
    # |log(-log S) - log(-log 0.5)| / se(log(-log S)) <= 1.96, from the first of them to the
    # event time after the last (not estimable when the last is the last event time).
    greenwood, inside = 0.0, []
    for _t, n, s in zip(c.times, c.n_at_risk, c.survival, strict=True):
        greenwood += 1 / (n * (n - 1)) if n > 1 else math.inf
        if 0 < s < 1 and math.isfinite(greenwood):
            r = (math.log(-math.log(s)) - math.log(-math.log(0.5))) * abs(math.log(s))
            inside.append(abs(r / math.sqrt(greenwood)) <= Z95)
        else:
            inside.append(False)
    chosen = [i for i, ok in enumerate(inside) if ok]
    assert overall.median_lower_days == c.times[chosen[0]] <= overall.median_days
    last = chosen[-1] + 1
    assert overall.median_upper_days == (c.times[last] if last < len(c.times) else None)


def test_by_arm_by_hand(con, tmp_path):
    # Arm A: 10E 20C 30E 40E.  t=10: 3/4 = 0.75; t=30: n=2, 0.75 * 1/2 = 0.375 -> median 30;
    #        t=40: n=1 -> 0.
    # Arm B: 5E 15E 15C 200C.  t=5: 3/4; t=15: n=3, 0.75 * 2/3 = 0.5 -> S never < 0.5: no
    #        median (convention: the first time S(t) < 0.5, strictly, as statsmodels and SAS).
    result = kaplan_meier(con, out=tmp_path / "km")
    a, b = result.groups[1:]
    assert a.name == "Arm A: Surgery + chemotherapy" and b.name == "Arm B: Chemotherapy alone"
    assert a.curve.survival == pytest.approx((0.75, 0.375, 0.0))
    assert (a.n, a.events, a.median_days) == (4, 3, 30)
    assert b.curve.survival == pytest.approx((0.75, 0.5))
    assert (b.n, b.events, b.median_days) == (4, 2, None)
    # With n=4 the bands are wide: the lower band is already <= 0.5 at t=5 (lower limit 5), the
    # upper band never falls to 0.5 (upper limit not estimable).
    assert b.curve.lower[0] < 0.5 < min(b.curve.upper)
    assert (b.median_lower_days, b.median_upper_days) == (5, None)


def test_numbers_at_risk_equal_a_direct_count_of_the_rows(con, tmp_path):
    result = kaplan_meier(con, out=tmp_path / "km")
    for g in result.groups:
        arm = None if g.name == "Overall" else g.name[4]
        for month, n in g.at_risk.items():
            (direct,) = con.execute(
                "SELECT count(*) FROM analysis.adtte t JOIN analysis.adsl s USING (USUBJID) "
                "WHERE PARAMCD = 'PFS' AND AVAL >= ? AND (? IS NULL OR ARMCD = ?)",
                [month * MONTH_DAYS, arm, arm],
            ).fetchall()[0]
            assert n == direct, (g.name, month)
        (n, events) = con.execute(
            "SELECT count(*), count(*) FILTER (CNSR = 0) FROM analysis.adtte t "
            "JOIN analysis.adsl s USING (USUBJID) WHERE PARAMCD = 'PFS' AND (? IS NULL OR ARMCD = ?)",
            [arm, arm],
        ).fetchall()[0]
        assert (g.n, g.events) == (n, events)
    assert result.groups[0].at_risk == {0: 8, 6: 1, 12: 0, 18: 0, 24: 0}  # only AVAL 200 > 182.6


def test_writes_png_csv_and_markdown(con, tmp_path):
    result = kaplan_meier(con, out=tmp_path / "km")
    assert result.files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = result.files["csv"].read_text().splitlines()
    assert lines[0].startswith("group,n,events,censored,median_days,median_lcl_days")
    assert lines[1].startswith('"Overall",8,5,3,30,')
    assert lines[1].endswith(",8,1,0,0,0")
    md = result.files["md"].read_text()
    assert "analysts only" in md
    assert f"| Overall | 8 | 5 | {30 / MONTH_DAYS:.1f} (" in md
    curve = result.files["curve"].read_text().splitlines()
    assert curve[1] == '"Overall",5,8,1,0.875,' + curve[1].split(",", 5)[5]


def test_other_parameter_and_missing_parameter(con, tmp_path):
    os_ = kaplan_meier(con, out=tmp_path / "os", paramcd="OS")
    assert os_.groups[0].curve.times == (1005, 1010, 1015, 1030, 1040)
    assert os_.files["png"].name == "km_os.png"
    with pytest.raises(ValueError, match="TFST"):
        kaplan_meier(con, out=tmp_path / "x", paramcd="TFST")


def test_no_events_gives_a_flat_curve_and_no_median():
    curve = estimate([10, 20], [1, 1])
    assert curve.times == () and curve.survival == ()


def test_the_published_numbers_are_the_librarys_on_a_cohort(tmp_path: Path) -> None:
    """On a synthesised cohort, every median, its CI and the curve written to km_pfs.csv and
    km_pfs_curve.csv equal statsmodels' SurvfuncRight on the ADTTE rows, read here directly."""
    import csv

    import numpy as np
    from statsmodels.duration.survfunc import SurvfuncRight

    from rescue_pipeline.site_load import work_db
    from tests.cohort import build_cohort

    config, _ = build_cohort(tmp_path / "c", patients=300, seed=11)
    with work_db(config) as con:
        result = kaplan_meier(con, out=tmp_path / "km")
        rows = con.execute(
            "SELECT coalesce(s.ARMCD, ''), t.AVAL, t.CNSR FROM analysis.adtte t "
            "LEFT JOIN analysis.adsl s USING (USUBJID) WHERE t.PARAMCD = 'PFS'"
        ).fetchall()
    written = {r["group"]: r for r in csv.DictReader(result.files["csv"].open())}
    curve = list(csv.DictReader(result.files["curve"].open()))
    assert len(result.groups) == 3  # overall and both arms
    for g in result.groups:
        arm = "" if g.name == "Overall" else g.name[4]
        picked = [(a, c) for k, a, c in rows if g.name == "Overall" or k == arm]
        sf = SurvfuncRight(np.array([a for a, _ in picked], float),
                           np.array([1 if c == 0 else 0 for _, c in picked]))  # fmt: skip
        median = sf.quantile(0.5)
        with np.errstate(divide="ignore", invalid="ignore"):  # log(0) at S = 0: left out
            low, high = sf.quantile_ci(0.5, method="cloglog")
        expected = [None if not np.isfinite(x) else float(x) for x in (median, low, high)]
        assert [g.median_days, g.median_lower_days, g.median_upper_days] == expected
        row = written[g.name]
        assert [row["median_days"], row["median_lcl_days"], row["median_ucl_days"]] == [
            "" if x is None else f"{x:g}" for x in expected
        ]
        mine = [r for r in curve if r["group"] == g.name]
        assert [int(r["time_days"]) for r in mine] == [int(t) for t in sf.surv_times]
        # written with 6 decimals
        assert [float(r["survival"]) for r in mine] == pytest.approx(list(sf.surv_prob), abs=5e-7)
