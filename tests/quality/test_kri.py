"""Key risk indicators: which site stands out, on worked examples on both sides of each limit."""

from __future__ import annotations

import math

import pytest

from rescue_pipeline.quality.kri import BY_ID, assess, z_score


def test_a_proportion_is_flagged_by_its_funnel_z_score() -> None:
    # study-wide 60 / 3000 = 2 %; site c: 40 of 1000 = 4 %, z = 0.02 / sqrt(0.02 * 0.98 / 1000)
    assessed = assess(BY_ID["quarantine_rate"], [("a", 10, 1000), ("b", 10, 1000), ("c", 40, 1000)])
    assert assessed.study_value == pytest.approx(0.02)
    by_site = {s.site_id: s for s in assessed.sites}
    assert by_site["c"].z == pytest.approx(0.02 / math.sqrt(0.02 * 0.98 / 1000))  # 4.52
    assert by_site["c"].flag == "flag" and assessed.flagged == ["c"]
    assert by_site["a"].flag == "ok"  # fewer quarantined lines than the others is no risk


@pytest.mark.parametrize(("n", "flag"), [(23, "ok"), (24, "warn"), (27, "warn"), (28, "flag")])
def test_proportion_limits_at_two_and_three(n: int, flag: str) -> None:
    # 80 of 5000 study-wide (1.6 %); the site's 1000 records hold n of them:
    # z = (n / 1000 - 0.016) / sqrt(0.016 x 0.984 / 1000), so 24 is just past 2, 28 past 3
    rows = [("big", 80 - n, 4000), ("site", n, 1000)]
    p0 = 80 / 5000
    z = (n / 1000 - p0) / math.sqrt(p0 * (1 - p0) / 1000)
    got = {s.site_id: s for s in assess(BY_ID["quarantine_rate"], rows).sites}["site"]
    assert got.z == pytest.approx(z) and got.flag == flag
    assert (z > 3) == (flag == "flag") and (2 < z <= 3) == (flag == "warn")


def test_a_rate_per_subject_uses_a_poisson_z_score() -> None:
    assert z_score("rate", 30, 10, 1.0) == pytest.approx((30 - 10) / math.sqrt(10))
    assessed = assess(BY_ID["open_queries"], [("a", 100, 100), ("b", 100, 100), ("c", 160, 80)])
    assert {s.site_id: s.flag for s in assessed.sites} == {"a": "ok", "b": "ok", "c": "flag"}


def test_nothing_to_count_is_not_a_risk_nor_a_division_by_zero() -> None:
    assessed = assess(BY_ID["randomised_not_eligible"], [("a", 0, 0), ("b", 0, 10)])
    assert {s.site_id: (s.value, s.flag) for s in assessed.sites} == {
        "a": (None, "n/a"), "b": (0.0, "ok")}  # fmt: skip
    assert z_score("proportion", 5, 10, 1.0) is None  # no spread at 100 %


@pytest.mark.parametrize(
    ("days", "others", "flag"),
    [(30, 5, "ok"), (31, 20, "warn"), (40, 20, "flag"), (39, 20, "warn")],
)
def test_days_flag_above_the_threshold_and_twice_the_other_sites(
    days: float, others: float, flag: str
) -> None:
    rows = [("x", days, 50), ("y", others, 50), ("z", others, 50)]
    got = {s.site_id: s.flag for s in assess(BY_ID["latency_days"], rows).sites}
    assert got["x"] == flag


def test_a_site_with_too_few_records_is_not_judged() -> None:
    # two subjects randomised, both of unknown eligibility, against a 12 % study rate
    rows = [("big", 10, 100), ("small", 2, 2)]
    got = {s.site_id: s for s in assess(BY_ID["randomised_not_eligible"], rows).sites}
    assert got["small"].z is not None and got["small"].z > 3
    assert got["small"].flag == "n/a"  # below MIN_DENOMINATOR
