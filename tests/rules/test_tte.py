"""PFS (and OS, TFST) on worked examples: one test per row of the censoring table, and ties."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta

import pytest

from rescue_pipeline.rules.tte import (
    OS,
    PFS,
    TFST,
    Dated,
    EventSource,
    Settings,
    Timeline,
    derive,
)

R = date(2024, 1, 1)  # randomisation
S = Settings(data_cutoff=date(2026, 6, 30))


def at(day: int, sid: str, kind: str = "Observation") -> Dated:
    domain = {"Observation": "RS", "Patient": "ADSL"}.get(kind, "CM")
    return Dated(R + timedelta(days=day), kind, sid, "effectiveDateTime", domain, domain + "DTC")


def timeline(**kw: object) -> Timeline:
    start = Dated(R, "ResearchSubject", "rs", "period.start", "ADSL", "RANDDT")
    return Timeline(start=R, start_source=start, **kw)  # type: ignore[arg-type]


def row(t: Timeline, settings: Settings = S, param=PFS):
    r = derive(param, t, settings)
    return (r.adt - R).days, r.cnsr, r.rule, r.srcid


ASSESS = tuple(at(d, f"a{d}") for d in (84, 168, 252))


def test_rule_4_documented_progression_is_the_event() -> None:
    t = timeline(progression=(at(252, "pd"),), adequate_assessments=ASSESS)
    assert row(t) == (252, 0, 4, "pd")
    r = derive(PFS, t, S)
    assert (r.aval, r.evntdesc, r.cnsdtdsc, r.srcdom, r.srcvar) == (
        253,
        "Documented progression",
        None,
        "RS",
        "RSDTC",
    )
    assert (r.fhir_type, r.fhir_element, r.srcid) == ("Observation", "effectiveDateTime", "pd")


def test_rule_4_death_before_the_first_scheduled_assessment_is_an_event() -> None:
    t = timeline(death=(at(40, "pat", "Patient"),))
    assert row(t) == (40, 0, 4, "pat")


def test_tie_progression_and_death_the_same_day_reports_the_progression() -> None:
    t = timeline(
        progression=(at(168, "pd"),),
        death=(at(168, "pat", "Patient"),),
        adequate_assessments=ASSESS[:1],
    )
    assert row(t) == (168, 0, 4, "pd")


def test_rule_2_new_anticancer_therapy_before_progression_censors_at_the_last_assessment_before_it() -> (
    None
):
    t = timeline(
        progression=(at(252, "pd"),),
        subsequent_therapy=(at(200, "gem", "MedicationAdministration"),),
        adequate_assessments=ASSESS,
    )
    assert row(t) == (168, 1, 2, "a168")
    r = derive(PFS, t, S)
    assert (
        r.cnsdtdsc == "Last adequate assessment before new anticancer therapy"
        and r.evntdesc is None
    )


def test_rule_2_therapy_before_any_assessment_censors_at_randomisation() -> None:
    t = timeline(
        progression=(at(252, "pd"),),
        subsequent_therapy=(at(50, "gem"),),
        adequate_assessments=ASSESS,
    )
    assert row(t) == (0, 1, 2, "rs")
    assert derive(PFS, t, S).aval == 1


def test_rule_2_can_be_switched_off() -> None:
    t = timeline(
        progression=(at(252, "pd"),),
        subsequent_therapy=(at(200, "gem"),),
        adequate_assessments=ASSESS,
    )
    r = derive(PFS, t, S, censor_new_therapy=False)
    assert (r.cnsr, r.rule) == (0, 4)


def test_rule_3_event_after_two_missed_assessments_is_censored_at_the_last_adequate_one() -> None:
    t = timeline(progression=(at(84 + 183, "pd"),), adequate_assessments=ASSESS[:1])
    assert row(t) == (84, 1, 3, "a84")  # 183 days > 2 x 84 + 14
    t = timeline(progression=(at(84 + 182, "pd"),), adequate_assessments=ASSESS[:1])
    assert row(t) == (266, 0, 4, "pd")  # 182 days: not more than 182


def test_rule_3_death_long_after_randomisation_without_assessments_is_censored_at_randomisation() -> (
    None
):
    t = timeline(death=(at(200, "pat", "Patient"),))
    assert row(t) == (0, 1, 3, "rs")


def test_ne_assessments_are_not_adequate() -> None:
    # an NE assessment is not passed as adequate: the gap is counted from day 84
    t = timeline(progression=(at(300, "pd"),), adequate_assessments=(at(84, "a84"),))
    assert row(t) == (84, 1, 3, "a84")


def test_rule_5_no_event_inside_the_window_censors_at_the_last_adequate_assessment_inside() -> None:
    late = (*ASSESS, at(700, "a700"), at(760, "a760"))
    t = timeline(progression=(at(800, "pd"),), adequate_assessments=late)
    assert row(t) == (700, 1, 5, "a700")  # window ends at day 730


def test_rule_5_window_ends_at_the_data_cutoff_when_earlier() -> None:
    t = timeline(adequate_assessments=ASSESS)
    assert row(t, Settings(data_cutoff=R + timedelta(days=200))) == (168, 1, 5, "a168")


def test_rule_5_no_assessment_at_all_censors_at_randomisation_with_aval_1() -> None:
    r = derive(PFS, timeline(), S)
    assert (r.aval, r.cnsr, r.rule, r.srcdom, r.srcvar) == (1, 1, 5, "ADSL", "RANDDT")
    assert (r.fhir_type, r.fhir_element) == ("ResearchSubject", "period.start")


def test_os_counts_death_only_and_censors_at_last_known_alive() -> None:
    t = timeline(progression=(at(100, "pd"),), death=(at(400, "pat", "Patient"),))
    assert row(t, param=OS) == (400, 0, 4, "pat")
    t = timeline(progression=(at(100, "pd"),), last_known_alive=at(500, "lab"))
    assert row(t, param=OS) == (500, 1, 5, "lab")


def test_tfst_is_the_first_subsequent_therapy_or_death() -> None:
    t = timeline(
        subsequent_therapy=(at(300, "gem"), at(321, "gem2")), death=(at(500, "pat", "Patient"),)
    )
    assert row(t, param=TFST) == (300, 0, 4, "gem")
    t = timeline(last_known_alive=at(90, "lab"))
    assert row(t, param=TFST) == (90, 1, 5, "lab")


# Rule book §7, worked by hand: randomisation on day 0, window days 0..730 inclusive.


def test_rule_2_new_therapy_on_the_day_of_the_progression_is_not_before_it() -> None:
    t = timeline(
        progression=(at(252, "pd"),),
        subsequent_therapy=(at(252, "gem", "MedicationAdministration"),),
        adequate_assessments=ASSESS,
    )
    assert row(t) == (252, 0, 4, "pd")
    t = timeline(
        progression=(at(252, "pd"),),
        subsequent_therapy=(at(251, "gem", "MedicationAdministration"),),
        adequate_assessments=ASSESS,
    )
    assert row(t) == (168, 1, 2, "a168")  # one day earlier: censored before the therapy


def test_rule_2_new_therapy_with_no_candidate_in_the_window_censors_before_the_therapy() -> None:
    t = timeline(
        subsequent_therapy=(at(200, "gem", "MedicationAdministration"),),
        adequate_assessments=ASSESS,
    )
    assert row(t) == (168, 1, 2, "a168")  # not rule 5's last assessment (day 252)
    late = timeline(
        subsequent_therapy=(at(731, "gem", "MedicationAdministration"),),
        adequate_assessments=ASSESS,
    )
    assert row(late) == (252, 1, 5, "a252")  # therapy after the window: rule 5


def test_the_window_includes_day_730_and_not_day_731() -> None:
    visits = tuple(at(d, f"a{d}") for d in range(84, 730, 84))  # ... day 672
    on_730 = timeline(progression=(at(730, "pd"),), adequate_assessments=visits)
    assert row(on_730) == (730, 0, 4, "pd")
    on_731 = timeline(progression=(at(731, "pd"),), adequate_assessments=visits)
    assert row(on_731) == (672, 1, 5, "a672")


def test_an_ne_visit_is_a_missed_assessment_for_rule_3() -> None:
    # adequate assessments on days 84 and (NE, left out by the caller) 168, 252; PD on day 267:
    # 267 - 84 = 183 > 2 x 84 + 14 = 182 -> two missed assessments
    t = timeline(progression=(at(267, "pd"),), adequate_assessments=(at(84, "a84"),))
    assert row(t) == (84, 1, 3, "a84")
    t = timeline(progression=(at(266, "pd"),), adequate_assessments=(at(84, "a84"),))
    assert row(t) == (266, 0, 4, "pd")  # 182 days: not more than 182


def _random_timeline(rng: random.Random) -> Timeline:
    """A subject with a few of everything, ties on purpose (days drawn from a small range)."""

    def some(prefix: str, kind: str, most: int) -> tuple[Dated, ...]:
        days = [rng.choice((1, 30, 84, 84, 168, 200, 252, 400, 700, 731, 800)) for _ in range(most)]
        return tuple(
            at(d, f"{prefix}{rng.randrange(3)}", kind) for d in days[: rng.randrange(most + 1)]
        )

    return timeline(
        progression=some("pd", "Observation", 3),
        death=some("death", "Patient", 1),
        subsequent_therapy=some("tx", "MedicationAdministration", 3),
        adequate_assessments=some("a", "Observation", 6),
        last_known_alive=at(rng.choice((100, 500, 900)), "alive", "Encounter"),
    )


def _shuffled(t: Timeline, rng: random.Random) -> Timeline:
    def mix(items: tuple[Dated, ...]) -> tuple[Dated, ...]:
        out = list(items)
        rng.shuffle(out)
        return tuple(out)

    return replace(
        t,
        progression=mix(t.progression),
        death=mix(t.death),
        subsequent_therapy=mix(t.subsequent_therapy),
        adequate_assessments=mix(t.adequate_assessments),
    )


def test_the_order_of_the_input_records_never_changes_a_row() -> None:
    """Sites send records in any order, and SQL returns rows in any order: 2,000 random subjects,
    each derived from five shuffles of its records, give one row per parameter."""
    rng = random.Random(20261207)
    decided = set()
    for _ in range(2_000):
        t = _random_timeline(rng)
        for param in (PFS, OS, TFST):
            rows = {derive(param, _shuffled(t, rng), S) for _ in range(5)}
            assert len(rows) == 1, (param.paramcd, t)
            decided.add((param.paramcd, next(iter(rows)).rule))
    # every rule was reached, so the shuffles were tried where each one decides
    assert {rule for code, rule in decided if code == "PFS"} == {2, 3, 4, 5}


def test_an_event_source_must_name_a_dated_timeline_field() -> None:
    with pytest.raises(ValueError, match="not a dated Timeline field"):
        EventSource("progresion", "Documented progression")
    with pytest.raises(ValueError, match="not a dated Timeline field"):
        EventSource("last_known_alive", "Alive")
