"""Recurrence numbering on worked examples (rescue_pipeline.rules.recurrence)."""

from __future__ import annotations

from datetime import date

from rescue_pipeline.rules.recurrence import DiseaseEvent, find_recurrences

END = date(2022, 6, 1)  # end of first-line chemotherapy
UNTIL = date(2025, 1, 1)  # randomisation


def ev(day: str, kind: str, sid: str = "x") -> DiseaseEvent:
    return DiseaseEvent(date.fromisoformat(day), kind, "Observation", sid)  # type: ignore[arg-type]


def found(*events: DiseaseEvent) -> list[tuple[int, str, str]]:
    return [
        (r.number, r.day.isoformat(), r.source_id)
        for r in find_recurrences(events, first_line_end=END, until=UNTIL)
    ]


def test_first_worsening_after_a_disease_free_time_is_recurrence_one() -> None:
    assert found(
        ev("2022-07-01", "disease_free"),
        ev("2023-03-01", "worsening", "w1"),
        ev("2023-04-01", "worsening", "w2"),
    ) == [(1, "2023-03-01", "w1")]


def test_worsening_without_a_documented_disease_free_time_is_not_a_recurrence() -> None:
    assert found(ev("2023-03-01", "worsening")) == []


def test_metastasis_present_at_diagnosis_is_not_a_recurrence() -> None:
    assert (
        found(
            ev("2021-12-01", "disease_free"),
            ev("2022-01-10", "worsening"),
            ev("2022-05-30", "worsening"),
        )
        == []
    )


def test_a_second_recurrence_needs_a_new_disease_free_time() -> None:
    events = (
        ev("2022-07-01", "disease_free"),
        ev("2023-03-01", "worsening", "r1"),
        ev("2023-05-01", "worsening", "again"),
        ev("2023-09-01", "disease_free"),
        ev("2024-06-01", "worsening", "r2"),
    )
    assert found(*events) == [(1, "2023-03-01", "r1"), (2, "2024-06-01", "r2")]


def test_worsening_after_randomisation_is_progression_not_recurrence() -> None:
    assert found(ev("2022-07-01", "disease_free"), ev("2025-01-02", "worsening")) == []
    assert found(ev("2022-07-01", "disease_free"), ev("2025-01-01", "worsening", "on")) == [
        (1, "2025-01-01", "on")
    ]


def test_same_day_normal_ca125_and_worsening_counts_the_disease_free_first() -> None:
    assert found(ev("2023-03-01", "worsening", "w"), ev("2023-03-01", "disease_free")) == [
        (1, "2023-03-01", "w")
    ]
