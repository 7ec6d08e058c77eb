"""The screening window on worked examples (rule book §2)."""

from __future__ import annotations

from datetime import date, timedelta

from rescue_pipeline.rules.screening import recurrence_limit, window_end

REC = date(2024, 3, 1)
CUTOFF = date(2026, 6, 30)


def days(n: int) -> date:
    return REC + timedelta(days=n)


def end(**kw: object) -> date:
    args: dict[str, object] = {
        "randomised": None, "period_end": None, "consent": None,
        "screened_recurrence": REC, "assessments": (), "cutoff": CUTOFF,
    }  # fmt: skip
    args.update(kw)
    return window_end(**args)  # type: ignore[arg-type]


def test_the_screened_recurrence_is_cut_at_consent_else_randomisation_else_the_cutoff() -> None:
    assert recurrence_limit(days(5), days(120), CUTOFF) == days(5)
    assert recurrence_limit(None, days(120), CUTOFF) == days(120)
    assert recurrence_limit(None, None, CUTOFF) == CUTOFF


def test_a_randomised_subjects_window_ends_on_the_randomisation_date() -> None:
    assert end(randomised=days(120), consent=days(5), assessments=[days(150)]) == days(120)


def test_a_screen_failure_with_a_period_end_is_screened_until_it() -> None:
    assert end(period_end=days(90), consent=days(5), assessments=[days(110)]) == days(90)


def test_consent_at_recurrence_extends_to_the_assessments_of_the_next_180_days() -> None:
    # consented 5 days after the recurrence, RECIST after the cycles on day 100, surgeon day 104
    assert end(consent=days(5), assessments=[days(100), days(104)]) == days(104)


def test_assessments_count_up_to_day_180_after_the_recurrence_and_not_day_181() -> None:
    assert end(consent=days(5), assessments=[days(180)]) == days(180)
    assert end(consent=days(5), assessments=[days(181)]) == days(5)


def test_an_assessment_before_the_consent_does_not_shorten_the_window() -> None:
    assert end(consent=days(60), assessments=[days(30)]) == days(60)


def test_without_consent_or_assessments_the_window_runs_to_the_cutoff() -> None:
    assert end(screened_recurrence=None) == CUTOFF
    assert end(consent=None, assessments=[days(40)]) == days(40)
