"""Eligibility criteria on worked examples, with the boundaries (rescue_pipeline.rules.eligibility)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from rescue_pipeline.rules.eligibility import (
    Dated,
    ScreeningFacts,
    assess,
    summary,
)
from rescue_pipeline.rules.gcig import GcigResponse

REC = date(2024, 3, 1)


def d(day: date, sid: str = "x") -> Dated:
    return Dated(day, sid)


def eligible_facts(pfi: int = 400) -> ScreeningFacts:
    last_dose = REC - timedelta(days=pfi)
    first_line = tuple(d(last_dose - timedelta(days=21 * k), f"p{k}") for k in range(6))
    post = tuple(d(REC + timedelta(days=14 + 21 * k), f"q{k}") for k in range(4))
    return ScreeningFacts(
        recurrences=(d(REC, "rec1"),), has_disease_status_records=True, primary_site="ovary",
        behaviour="invasive", histology_class="epithelial", histology_code="8461/3",
        diagnosis_source="cond", platinum_doses=first_line + post,
        first_line_platinum=first_line,
        last_assessment_after_first_cycle=("PR", "recist1"), gcig=None, age_range=(60, 60),
        age_basis="consent",
        subject_source="rs", resectability=d(REC + timedelta(days=100), "res"),
        resectability_judgement="complete-resection-feasible", consent_on=REC + timedelta(days=110),
        consent_data_transfer=True,
    )  # fmt: skip


def status(f: ScreeningFacts) -> dict[str, str]:
    return {c.code: c.status for c in assess(f)}


def test_a_fully_eligible_subject() -> None:
    criteria = assess(eligible_facts())
    assert {c.code: c.status for c in criteria} == {
        "IN01": "met", "IN02": "met", "IN03": "met", "IN04": "met", "IN05": "met", "IN06": "met",
        "EX01": "not_met", "EX02": "not_met", "EX03": "not_met", "EX04": "not_met",
        "EX05": "not_met", "EX06": "not_met", "EX07": "not_met", "EX08": "not_met",
    }  # fmt: skip
    assert summary(criteria) == ("yes", [], [])
    in02 = criteria[1]
    assert in02.value == "PFI 400 days" and in02.evidence == ("p0", "rec1")


def test_pfi_of_182_days_is_platinum_resistant_and_183_sensitive() -> None:
    assert (status(eligible_facts(182))["IN02"], status(eligible_facts(182))["EX05"]) == (
        "not_met",
        "met",
    )
    assert (status(eligible_facts(183))["IN02"], status(eligible_facts(183))["EX05"]) == (
        "met",
        "not_met",
    )
    assert {c.code: c.status for c in assess(eligible_facts(182), pfi_days=180)}["IN02"] == "met"


def test_age_19_is_the_minimum() -> None:
    assert status(replace(eligible_facts(), age_range=(18, 18)))["IN04"] == "not_met"
    assert status(replace(eligible_facts(), age_range=(19, 19)))["IN04"] == "met"
    assert status(replace(eligible_facts(), age_range=None))["IN04"] == "unknown"


def test_in03_reads_recist_then_gcig() -> None:
    resp = GcigResponse("response", REC, None, ("ca1", "ca2", "ca3"), "")
    none = GcigResponse("no_response", None, None, ("ca1",), "")
    base = eligible_facts()
    assert status(replace(base, last_assessment_after_first_cycle=("PD", "r")))["IN03"] == "not_met"
    assert (
        status(replace(base, last_assessment_after_first_cycle=("NE", "r"), gcig=resp))["IN03"]
        == "met"
    )
    assert status(replace(base, last_assessment_after_first_cycle=None, gcig=resp))["IN03"] == "met"
    assert (
        status(replace(base, last_assessment_after_first_cycle=None, gcig=none))["IN03"]
        == "not_met"
    )
    assert (
        status(replace(base, last_assessment_after_first_cycle=("NE", "r"), gcig=none))["IN03"]
        == "unknown"
    )
    assert (
        status(replace(base, last_assessment_after_first_cycle=None, gcig=None))["IN03"]
        == "unknown"
    )


def test_no_recurrence_with_and_without_disease_status_records() -> None:
    no_rec = replace(eligible_facts(), recurrences=())
    assert (status(no_rec)["IN01"], status(no_rec)["EX01"]) == ("not_met", "met")
    nothing = replace(no_rec, has_disease_status_records=False)
    assert (status(nothing)["IN01"], status(nothing)["EX01"]) == ("unknown", "unknown")


def test_second_recurrence_fails_in01_and_triggers_ex03() -> None:
    f = replace(eligible_facts(), recurrences=(d(REC - timedelta(days=500), "r1"), d(REC, "r2")))
    assert (status(f)["IN01"], status(f)["EX03"]) == ("not_met", "met")


def test_borderline_or_non_epithelial_histology() -> None:
    for change in ({"behaviour": "borderline"}, {"histology_class": "non_epithelial"}):
        f = replace(eligible_facts(), **change)
        assert (status(f)["IN01"], status(f)["EX02"]) == ("not_met", "met")


def test_progression_during_the_post_recurrence_platinum_up_to_28_days_after_its_last_dose() -> (
    None
):
    base = eligible_facts()
    post = [x.day for x in base.platinum_doses if x.day > REC]
    first, last = min(post), max(post)
    for day, want in (
        (first - timedelta(days=1), "not_met"),  # before its first dose
        (first, "met"),
        (last + timedelta(days=28), "met"),
        (last + timedelta(days=29), "not_met"),
    ):
        assert status(replace(base, worsenings=(d(day, "w"),)))["EX05"] == want, day


def test_resectability_judgements() -> None:
    base = eligible_facts()
    pall = replace(base, resectability_judgement="palliative-only")
    assert (status(pall)["IN05"], status(pall)["EX06"], status(pall)["EX07"]) == (
        "not_met",
        "met",
        "not_met",
    )
    unres = replace(base, resectability_judgement="unresectable-metastasis")
    assert (status(unres)["IN05"], status(unres)["EX07"]) == ("not_met", "met")
    missing = replace(base, resectability=None, resectability_judgement=None)
    assert (status(missing)["IN05"], status(missing)["EX06"]) == ("unknown", "not_met")


def test_exclusions_not_recorded_anywhere_are_not_met_and_recorded_ones_apply() -> None:
    base = eligible_facts()
    assert status(replace(base, interfering_malignancy=(d(REC, "im"),)))["EX04"] == "met"
    assert status(replace(base, comorbidity=(d(REC, "cm"),)))["EX08"] == "met"


def test_consent_without_data_transfer() -> None:
    assert status(replace(eligible_facts(), consent_data_transfer=False))["IN06"] == "not_met"
    assert (
        status(replace(eligible_facts(), consent_on=None, consent_data_transfer=None))["IN06"]
        == "unknown"
    )


def test_summary_no_beats_unknown() -> None:
    f = replace(
        eligible_facts(), age_range=(18, 18), resectability=None, resectability_judgement=None
    )
    assert summary(assess(f)) == ("no", ["IN04"], ["IN05"])
    f = replace(eligible_facts(), resectability=None, resectability_judgement=None)
    assert summary(assess(f)) == ("unknown", [], ["IN05"])


# Rule book §6 IN04 with §1 "Dates": age on the consent date, else the randomisation date.


def test_in04_a_partial_birth_date_decides_only_when_every_day_agrees() -> None:
    assert status(replace(eligible_facts(), age_range=(64, 64)))["IN04"] == "met"
    assert status(replace(eligible_facts(), age_range=(63, 64)))["IN04"] == "met"  # both >= 19
    assert status(replace(eligible_facts(), age_range=(18, 19)))["IN04"] == "unknown"
    assert status(replace(eligible_facts(), age_range=(17, 18)))["IN04"] == "not_met"


def test_in04_without_consent_is_decided_on_the_randomisation_date() -> None:
    f = replace(eligible_facts(), consent_on=None, consent_data_transfer=None,
                age_range=(60, 60), age_basis="randomisation")  # fmt: skip
    [in04] = [c for c in assess(f) if c.code == "IN04"]
    assert (in04.status, in04.value) == ("met", "age 60 on the randomisation date")
    assert status(f)["IN06"] == "unknown"  # no Consent at all: missing, not a refusal


# Rule book §4 EX05: progression during the post-recurrence chemotherapy, or a first-line PFI
# under 183 days (to the FIRST recurrence, whatever recurrence is screened).


def second_recurrence(first_pfi: int, screened_pfi: int) -> ScreeningFacts:
    base = eligible_facts(screened_pfi)
    rec1 = REC - timedelta(days=screened_pfi + 200)
    last1 = rec1 - timedelta(days=first_pfi)
    line1 = tuple(d(last1 - timedelta(days=21 * k), f"f{k}") for k in range(6))
    line2 = tuple(x for x in base.platinum_doses if x.day < REC)
    post = tuple(x for x in base.platinum_doses if x.day > REC)
    return replace(
        base, recurrences=(d(rec1, "rec1"), d(REC, "rec2")), first_line_platinum=line1,
        platinum_doses=line1 + line2 + post,
    )  # fmt: skip


def test_ex05_a_first_line_pfi_of_182_days_is_resistant_and_183_is_not() -> None:
    assert status(second_recurrence(182, 400))["EX05"] == "met"
    assert status(second_recurrence(183, 400))["EX05"] == "not_met"


def test_ex05_reads_the_first_line_pfi_not_the_screened_one() -> None:
    # second recurrence 100 days after the second line: IN02 not met, but EX05 is about line 1
    f = second_recurrence(400, 100)
    assert (status(f)["IN02"], status(f)["EX05"], status(f)["EX03"]) == (
        "not_met",
        "not_met",
        "met",
    )


def test_ex05_a_progression_during_the_first_line_is_not_platinum_refractory() -> None:
    base = eligible_facts()
    during_first = max(base.first_line_platinum, key=lambda x: x.day).day - timedelta(days=30)
    assert status(replace(base, worsenings=(d(during_first, "w"),)))["EX05"] == "not_met"
