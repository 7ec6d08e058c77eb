"""Actual arm, safety population and end-of-study status on worked examples, each boundary from
both sides."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from rescue_pipeline.rules.treatment import (
    NOT_TREATED,
    SCREEN_FAILURE,
    actual_arm,
    arm_null_reason,
    end_of_study_status,
)

RAND = date(2025, 3, 10)
CUTOFF = date(2026, 1, 31)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("surgeries", "doses", "expected"),
    [
        ([RAND], [], "A"),  # surgery on the randomisation day counts
        ([RAND - DAY], [], None),  # the surgery before randomisation is not the trial's
        ([RAND - DAY], [RAND + 7 * DAY], "B"),  # ... and chemotherapy after it is arm B's
        ([RAND + 30 * DAY], [RAND + 7 * DAY], "A"),  # surgery and chemotherapy: A
        ([], [RAND], "B"),
        ([], [RAND - DAY], None),  # only doses before randomisation: not treated
        ([CUTOFF], [], "A"),  # on the cut-off: counted
        ([CUTOFF + DAY], [CUTOFF + DAY], None),  # after it: not yet known
    ],
)
def test_actual_arm(surgeries: list[date], doses: list[date], expected: str | None) -> None:
    got = actual_arm(randomised_on=RAND, cutoff=CUTOFF, secondary_surgeries=surgeries,
                     doses=doses)  # fmt: skip
    assert got == expected


def test_actual_arm_needs_randomisation() -> None:
    assert actual_arm(randomised_on=None, cutoff=CUTOFF, secondary_surgeries=[RAND],
                      doses=[RAND]) is None  # fmt: skip


def test_arm_null_reason() -> None:
    assert arm_null_reason(randomised=False, actual=None) == SCREEN_FAILURE
    assert arm_null_reason(randomised=True, actual=None) == NOT_TREATED
    assert arm_null_reason(randomised=True, actual="B") is None


WINDOW = 730
LAST = RAND + timedelta(days=WINDOW)  # the window's last day, included
CUTOFF_LATE = LAST + 30 * DAY  # a cut-off after the whole window


@pytest.mark.parametrize(
    ("status", "ended_on", "died_on", "expected"),
    [
        ("on-study", None, None, "ONGOING"),
        ("on-study-intervention", None, None, "ONGOING"),
        ("follow-up", None, None, "ONGOING"),
        (" On-Study ", None, None, "ONGOING"),  # as sites write it
        ("withdrawn", None, None, "DISCONTINUED"),
        ("withdrawn", LAST + DAY, None, "DISCONTINUED"),  # a withdrawal is never a completion
        ("off-study", LAST - DAY, None, "DISCONTINUED"),
        ("off-study", LAST, None, "COMPLETED"),  # followed through the last day
        ("off-study", None, None, None),  # left, but when is not known
        ("on-study", None, LAST, "DISCONTINUED"),  # died inside the window (stale status)
        ("off-study", LAST + 5 * DAY, LAST + DAY, "COMPLETED"),  # died after the window
        ("off-study", LAST - 400 * DAY, LAST + DAY, "DISCONTINUED"),  # left early, died late
        ("on-study", None, CUTOFF_LATE + DAY, "ONGOING"),  # a death after the cut-off: unknown
        ("off-study", CUTOFF_LATE + DAY, None, None),  # an end after the cut-off: not yet
        (None, None, None, None),
        ("made-up", None, None, None),
    ],
)
def test_end_of_study_status(
    status: str | None, ended_on: date | None, died_on: date | None, expected: str | None
) -> None:
    got = end_of_study_status(randomised_on=RAND, status=status, ended_on=ended_on,
                              died_on=died_on, window_days=WINDOW,
                              cutoff=CUTOFF_LATE)  # fmt: skip
    assert got == expected


def test_end_of_study_status_needs_randomisation() -> None:
    assert end_of_study_status(randomised_on=None, status="on-study", ended_on=None,
                               died_on=None, window_days=WINDOW, cutoff=CUTOFF_LATE) is None  # fmt: skip
