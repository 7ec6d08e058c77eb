"""Rule book §1 "Dates": a partial date decides a rule only when every full date it allows gives
the same answer; otherwise the rule is `unknown`.

Worked examples computed by hand. A randomised subject's screening window ends on the
randomisation date (§2), so a surgeon's judgement "unresectable-metastasis" sent as `2024-02`
(any day 1-29 February 2024, a leap year) counts when she was randomised on 29 February (every
day falls in the window: EX07 met, IN05 not met) but not when randomised on 28 February (the
29th would fall after it: EX07 met or not, so unknown).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from rescue_pipeline.rules.eligibility import Criterion
from rescue_pipeline.rules.partial_dates import agree, days_allowed, readings
from tests.core.conftest import consent, dose, patient, subject
from tests.core.test_core_tables import _condition, _status

RESCUE = "https://rescue-trial.example.org/fhir/CodeSystem/rescue-assessment"


def judgement(oid: str, pid: str, answer: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": RESCUE, "code": "resectability"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day,
        "valueCodeableConcept": {"coding": [{"system": RESCUE, "code": answer}]},
    }


def criteria(con: Any) -> dict[str, tuple[str, str | None, str | None]]:
    return {
        c: (s, v, e)
        for c, s, v, e in con.execute(
            "SELECT criterion, status, value, evidence FROM analysis.eligibility"
        ).fetchall()
    }


def site(randomised: str, judged: str) -> dict[str, list[Any]]:
    return {
        "Patient": [patient("p1")],
        "ResearchSubject": [subject("r1", "p1", start=randomised, consent="c1")],
        "Consent": [consent("c1", "p1", day="2024-01-05")],
        "Observation": [judgement("j1", "p1", "unresectable-metastasis", judged)],
        # a platinum dose dated only to the year has no place in a line; the build goes on
        "MedicationAdministration": [
            dose("m1", "p1", "40048", "2023-06-01"),
            dose("m2", "p1", "40048", "2023-06-22"),
            dose("m3", "p1", "40048", "2023"),
        ],
    }


def test_ex07_a_judgement_dated_to_a_month_inside_the_window_decides(build) -> None:
    con = build(site(randomised="2024-02-29", judged="2024-02"), analysis=True)
    got = criteria(con)
    assert got["EX07"][0] == "met"
    assert got["IN05"][0] == "not_met"
    assert con.execute("SELECT eligible FROM analysis.eligibility_summary").fetchall() == [("no",)]


def test_ex07_a_month_reaching_past_the_window_leaves_it_unknown(build) -> None:
    con = build(site(randomised="2024-02-28", judged="2024-02"), analysis=True)
    got = criteria(con)
    assert got["EX07"][0] == "unknown"
    assert "partial date" in (got["EX07"][1] or "")
    assert got["EX07"][2] == "j1"  # the data manager sees which record to ask about
    assert got["IN05"][0] == "unknown"
    # the partial dose is in core.partial_dates, not in a line
    assert con.execute(
        "SELECT kind, earliest::VARCHAR, latest::VARCHAR, precision FROM core.partial_dates "
        "ORDER BY source_id"
    ).fetchall() == [
        ("resectability", "2024-02-01", "2024-02-29", "month"),
        ("dose", "2023-01-01", "2023-12-31", "year"),
    ]
    assert con.execute("SELECT count(*) FROM core.regimens").fetchall() == [(1,)]


def test_a_month_wholly_after_the_window_never_counts(build) -> None:
    con = build(site(randomised="2024-02-29", judged="2024-03"), analysis=True)
    got = criteria(con)
    assert got["EX07"][0] == "not_met"  # no judgement in the window on any day
    assert got["IN05"][0] == "unknown"


def test_days_allowed_stop_at_the_window_and_say_when_a_day_falls_after_it() -> None:
    feb = (date(2024, 2, 1), date(2024, 2, 29))
    assert days_allowed(*feb, until=date(2024, 2, 29)) == [
        date(2024, 2, 1) + timedelta(days=k) for k in range(29)
    ]
    within = days_allowed(*feb, until=date(2024, 2, 28))
    assert within[-2:] == [date(2024, 2, 28), None] and len(within) == 29
    assert days_allowed(*feb, until=date(2024, 2, 1)) == [date(2024, 2, 1), None]


def test_readings_are_every_combination_within_the_budget_and_the_ends_beyond_it() -> None:
    assert list(readings([[1, 2], ["a", "b", "c"]])) == [
        (1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (2, "c"),
    ]  # fmt: skip
    assert list(readings([[1, 2, 3], [4, 5, 6]], budget=8)) == [(1, 4), (1, 6), (3, 4), (3, 6)]
    assert list(readings([])) == [()]


def test_agree_keeps_a_shared_status_and_makes_a_split_one_unknown() -> None:
    a = [Criterion("IN02", "met", "PFI 200 days", ("m1",)), Criterion("EX07", "met", "x", ())]
    b = [Criterion("IN02", "met", "PFI 210 days", ("m2",)), Criterion("EX07", "not_met", None, ())]
    in02, ex07 = agree([a, b], ["j1"])
    assert (in02.status, in02.evidence) == ("met", ("m1", "m2"))
    assert in02.value == "met on every day a partial date allows"
    assert (ex07.status, ex07.evidence) == ("unknown", ("j1",))
    named = [Criterion("EX07", "met", "x", ("j2",)), Criterion("EX07", "not_met", None, ())]
    assert agree([[named[0]], [named[1]]], ["j1", "j2"])[0].evidence == ("j2",)
    assert agree([a, a], ["j1"]) == a


def recurrence_site(onset: str) -> dict[str, list[Any]]:
    """First-line carboplatin ending 22 January 2023; no evidence of disease on 15 June 2023;
    a secondary cancer whose onset is sent as `onset`."""
    return {
        "Patient": [patient("p1")],
        "ResearchSubject": [subject("r1", "p1", start="2024-02-29", consent="c1")],
        "Consent": [consent("c1", "p1", day="2024-01-05")],
        "MedicationAdministration": [
            dose("m1", "p1", "40048", "2023-01-01"),
            dose("m2", "p1", "40048", "2023-01-22"),
        ],
        "Observation": [_status("ned", "p1", "281900007", "2023-06-15", None)],
        "Condition": [
            _condition("rec", "p1", "128462008", "mcode-secondary-cancer-condition", onset)
        ],
    }


def test_in02_a_recurrence_month_wholly_past_six_months_decides(build) -> None:
    # 1 August 2023 is 191 days after 22 January: every day of August gives PFI >= 183
    con = build(recurrence_site("2023-08"), analysis=True)
    assert criteria(con)["IN02"][0] == "met"
    assert con.execute("SELECT count(*) FROM core.recurrences").fetchall() == [(0,)]
    assert con.execute("SELECT kind FROM core.partial_dates").fetchall() == [("secondary_onset",)]


def test_in02_a_recurrence_month_straddling_183_days_is_unknown(build) -> None:
    # July 2023: PFI 160 (1 July) .. 190 (31 July) days, 183 on 24 July
    con = build(recurrence_site("2023-07"), analysis=True)
    status, value, evidence = criteria(con)["IN02"]
    assert status == "unknown" and "met or not_met" in (value or "") and "rec" in (evidence or "")
    assert con.execute("SELECT pfi_days FROM analysis.eligibility_summary").fetchall() == [(None,)]


def test_a_recurrence_month_around_the_time_without_disease_is_unknown(build) -> None:
    # June 2023: before the 15th the worsening precedes the time without disease (no
    # recurrence); from the 15th it follows it (a recurrence, PFI 144-159 days: not met)
    con = build(recurrence_site("2023-06"), analysis=True)
    assert criteria(con)["IN02"][0] == "unknown"
    assert criteria(con)["IN01"][0] == "unknown"
