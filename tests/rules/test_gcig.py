"""GCIG CA-125 response on worked examples (Rustin et al. 2011), with the boundaries."""

from __future__ import annotations

from datetime import date, timedelta

from rescue_pipeline.rules.gcig import Ca125, gcig_response

C1 = date(2024, 3, 1)  # first post-recurrence cycle


def s(day: int, value: float) -> Ca125:
    return Ca125(C1 + timedelta(days=day), value, f"o{day}")


def test_fall_confirmed_28_days_later_is_a_response_dated_at_the_first_fall() -> None:
    r = gcig_response([s(-7, 400), s(21, 190), s(49, 150)], treatment_start=C1)
    assert (r.outcome, r.day) == ("response", C1 + timedelta(days=21))
    assert r.evidence == ("o-7", "o21", "o49")


def test_confirmation_after_27_days_is_not_enough() -> None:
    assert (
        gcig_response([s(-7, 400), s(21, 190), s(48, 150)], treatment_start=C1).outcome
        == "no_response"
    )


def test_a_value_above_the_50_percent_line_in_between_breaks_the_confirmation() -> None:
    r = gcig_response([s(-7, 400), s(21, 190), s(35, 210), s(49, 150)], treatment_start=C1)
    assert r.outcome == "no_response"
    r = gcig_response(
        [s(-7, 400), s(21, 190), s(35, 210), s(42, 180), s(70, 100)], treatment_start=C1
    )
    assert (r.outcome, r.day) == ("response", C1 + timedelta(days=42))


def test_exactly_50_percent_counts_as_a_fall() -> None:
    assert (
        gcig_response([s(-1, 100), s(10, 50), s(40, 50)], treatment_start=C1).outcome == "response"
    )


def test_pre_treatment_below_twice_the_uln_is_not_evaluable() -> None:
    r = gcig_response([s(-3, 69.9), s(21, 10), s(60, 8)], treatment_start=C1)
    assert r.outcome == "not_evaluable" and "below 2 x ULN" in r.reason
    assert (
        gcig_response([s(-3, 70.0), s(21, 10), s(60, 8)], treatment_start=C1).outcome == "response"
    )


def test_pre_treatment_sample_must_be_within_14_days_before_and_the_latest_counts() -> None:
    assert (
        gcig_response([s(-15, 400), s(21, 10), s(60, 8)], treatment_start=C1).outcome
        == "not_evaluable"
    )
    assert (
        gcig_response([s(-14, 400), s(21, 10), s(60, 8)], treatment_start=C1).outcome == "response"
    )
    r = gcig_response([s(-10, 400), s(-2, 60), s(21, 10), s(60, 8)], treatment_start=C1)
    assert r.outcome == "not_evaluable" and r.baseline == s(-2, 60)
    assert (
        gcig_response([s(0, 400), s(21, 10), s(60, 8)], treatment_start=C1).outcome
        == "not_evaluable"
    )


def test_no_treatment_start_is_not_evaluable() -> None:
    assert gcig_response([s(-3, 400)], treatment_start=None).outcome == "not_evaluable"


def test_progression_after_normalisation_is_twice_the_uln_confirmed_a_week_later() -> None:
    from rescue_pipeline.rules.gcig import gcig_progression

    values = [s(30, 20), s(90, 75), s(97, 80)]
    p = gcig_progression(values, baseline=300)
    assert p is not None and (p.day, p.threshold) == (C1 + timedelta(days=90), 70.0)
    assert gcig_progression([s(30, 20), s(90, 75), s(96, 80)], baseline=300) is None  # 6 days
    assert gcig_progression([s(30, 20), s(90, 75), s(94, 60), s(100, 80)], baseline=300) is None


def test_progression_without_normalisation_is_twice_the_nadir() -> None:
    from rescue_pipeline.rules.gcig import gcig_progression

    values = [s(30, 120), s(60, 60.0), s(90, 125), s(100, 130)]
    p = gcig_progression(values, baseline=400)
    assert p is not None and p.threshold == 120.0 and p.day == C1 + timedelta(days=90)


def test_no_progression_below_the_threshold() -> None:
    from rescue_pipeline.rules.gcig import gcig_progression

    assert gcig_progression([s(30, 20), s(60, 60), s(90, 65)], baseline=20) is None
    assert gcig_progression([], baseline=20) is None


# Rule book §5: the samples in between and the confirming one no higher than the previous + 10 %;
# changes within the normal range ignored; an evaluable baseline with no later sample is unknown.


def test_a_rise_of_exactly_10_percent_keeps_the_confirmation_and_more_breaks_it() -> None:
    ok = gcig_response([s(-7, 400), s(21, 100), s(35, 110), s(49, 121)], treatment_start=C1)
    assert (ok.outcome, ok.day) == ("response", C1 + timedelta(days=21))
    broken = gcig_response([s(-7, 400), s(21, 100), s(35, 110), s(49, 122)], treatment_start=C1)
    assert broken.outcome == "no_response"


def test_a_rise_within_the_normal_range_is_ignored() -> None:
    # 10 -> 30 U/mL triples but stays at or below the ULN (35): still confirmed
    r = gcig_response([s(-7, 400), s(21, 10), s(49, 30)], treatment_start=C1)
    assert r.outcome == "response"
    # 10 -> 36 leaves the normal range and is more than 10 % up: broken
    assert gcig_response([s(-7, 400), s(21, 10), s(49, 36)], treatment_start=C1).outcome == (
        "no_response"
    )


def test_an_evaluable_baseline_with_no_later_sample_is_not_evaluable() -> None:
    r = gcig_response([s(-7, 400)], treatment_start=C1)
    assert (r.outcome, r.baseline is not None) == ("not_evaluable", True)
