"""Lines of therapy: worked examples for each grouping rule (rescue_pipeline.rules.regimens)."""

from __future__ import annotations

from datetime import date, timedelta

from rescue_pipeline.rules.regimens import Administration, count_cycles, group_lines

CLASSES = {
    "carboplatin": ("platinum", True, False),
    "cisplatin": ("platinum", True, False),
    "paclitaxel": ("taxane", False, False),
    "docetaxel": ("taxane", False, False),
    "gemcitabine": ("antimetabolite", False, False),
    "bevacizumab": ("anti_vegf", False, True),
    "olaparib": ("parp_inhibitor", False, True),
}
D0 = date(2024, 1, 1)


def adm(day: int, drug: str, end: int | None = None) -> Administration:
    cls, platinum, maint = CLASSES[drug]
    return Administration(
        day=D0 + timedelta(days=day),
        drug=drug,
        drug_class=cls,
        platinum=platinum,
        maintenance_capable=maint,
        source_type="MedicationAdministration",
        source_id=f"{drug}-{day}",
        end=D0 + timedelta(days=end) if end is not None else None,
    )


def q21(drugs: list[str], cycles: int, start: int = 0) -> list[Administration]:
    return [adm(start + 21 * c, d) for c in range(cycles) for d in drugs]


def summary(regimens) -> list[tuple[int, bool, list[str], int]]:
    return [(r.line, r.maintenance, r.drugs, r.cycles) for r in regimens]


def test_a_doublet_every_21_days_is_one_line_of_six_cycles() -> None:
    assert summary(group_lines(q21(["carboplatin", "paclitaxel"], 6))) == [
        (1, False, ["carboplatin", "paclitaxel"], 6)
    ]


def test_weekly_paclitaxel_day_8_and_15_doses_stay_in_their_cycle() -> None:
    doses = q21(["carboplatin"], 6) + [
        adm(21 * c + d, "paclitaxel") for c in range(6) for d in (0, 7, 14)
    ]
    [regimen] = group_lines(doses)
    assert regimen.cycles == 6 and len(regimen.administrations) == 24


def test_split_dose_cisplatin_day_1_and_8_is_one_cycle() -> None:
    assert (
        count_cycles([D0, D0 + timedelta(days=7), D0 + timedelta(days=21), D0 + timedelta(days=28)])
        == 2
    )
    assert count_cycles([D0, D0 + timedelta(days=13)]) == 1
    assert count_cycles([D0, D0 + timedelta(days=14)]) == 2


def test_a_drug_started_a_few_days_later_joins_the_regimen() -> None:
    doses = [
        adm(0, "carboplatin"),
        adm(5, "paclitaxel"),
        *q21(["carboplatin", "paclitaxel"], 5, start=21),
    ]
    assert summary(group_lines(doses)) == [(1, False, ["carboplatin", "paclitaxel"], 6)]


def test_a_switch_within_the_drug_class_stays_in_the_line() -> None:
    doses = q21(["carboplatin", "paclitaxel"], 2) + q21(["carboplatin", "docetaxel"], 4, start=42)
    assert summary(group_lines(doses)) == [
        (1, False, ["carboplatin", "docetaxel", "paclitaxel"], 6)
    ]


def test_a_new_drug_of_another_class_after_the_window_starts_a_new_line() -> None:
    doses = q21(["carboplatin", "paclitaxel"], 3) + q21(["gemcitabine"], 3, start=63)
    assert summary(group_lines(doses)) == [
        (1, False, ["carboplatin", "paclitaxel"], 3),
        (2, False, ["gemcitabine"], 3),
    ]


def test_parp_inhibitor_after_chemotherapy_is_the_lines_maintenance_phase() -> None:
    doses = [*q21(["carboplatin", "paclitaxel"], 6), adm(140, "olaparib", end=500)]
    assert summary(group_lines(doses)) == [
        (1, False, ["carboplatin", "paclitaxel"], 6),
        (1, True, ["olaparib"], 1),
    ]


def test_bevacizumab_with_chemotherapy_then_alone_splits_into_treatment_and_maintenance() -> None:
    doses = q21(["carboplatin", "paclitaxel", "bevacizumab"], 6) + q21(
        ["bevacizumab"], 10, start=126
    )
    regimens = group_lines(doses)
    assert [(r.line, r.maintenance, r.drugs) for r in regimens] == [
        (1, False, ["bevacizumab", "carboplatin", "paclitaxel"]),
        (1, True, ["bevacizumab"]),
    ]
    assert regimens[0].platinum and not regimens[1].platinum
    assert regimens[1].start == D0 + timedelta(days=126)


def test_a_gap_longer_than_the_limit_starts_a_new_line_even_with_the_same_drugs() -> None:
    doses = q21(["carboplatin", "paclitaxel"], 6) + q21(
        ["carboplatin", "paclitaxel"], 3, start=105 + 91
    )
    assert [r.line for r in group_lines(doses)] == [1, 2]
    assert summary(group_lines(doses, gap_days=120)) == [
        (1, False, ["carboplatin", "paclitaxel"], 9)
    ]


def test_platinum_rechallenge_after_maintenance_is_a_new_line() -> None:
    doses = [*q21(["carboplatin", "paclitaxel"], 6), adm(140, "olaparib", end=600)]
    doses += q21(["carboplatin", "gemcitabine"], 4, start=620)
    assert summary(group_lines(doses)) == [
        (1, False, ["carboplatin", "paclitaxel"], 6),
        (1, True, ["olaparib"], 1),
        (2, False, ["carboplatin", "gemcitabine"], 4),
    ]


def test_order_of_input_does_not_matter() -> None:
    doses = [*q21(["carboplatin", "paclitaxel"], 6), adm(140, "olaparib", end=500)]
    assert summary(group_lines(list(reversed(doses)))) == summary(group_lines(doses))


def test_maintenance_drug_alone_is_a_maintenance_line() -> None:
    assert summary(group_lines([adm(0, "olaparib", end=300)])) == [(1, True, ["olaparib"], 1)]


# Rule book §3: a documented recurrence or progression always ends the line in progress.
# Carboplatin-paclitaxel q21 x 6 from day 0: last dose on day 105.


def day(n: int) -> date:
    return D0 + timedelta(days=n)


def test_a_recurrence_ends_the_line_even_when_the_next_treatment_follows_within_90_days() -> None:
    first = q21(["carboplatin", "paclitaxel"], 6)
    second = q21(["carboplatin", "paclitaxel"], 3, start=105 + 60)  # 60-day gap: < 90
    assert [r.line for r in group_lines(first + second)] == [1]  # merged without the break
    regimens = group_lines(first + second, breaks=[day(150)])
    assert summary(regimens) == [
        (1, False, ["carboplatin", "paclitaxel"], 6),
        (2, False, ["carboplatin", "paclitaxel"], 3),
    ]
    assert regimens[0].end == day(105) and regimens[1].start == day(165)


def test_a_same_class_switch_after_a_recurrence_starts_a_new_line() -> None:
    first = q21(["carboplatin", "paclitaxel"], 6)
    again = q21(["cisplatin", "docetaxel"], 3, start=105 + 40)
    assert [r.line for r in group_lines(first + again)] == [1]  # a switch within the line
    assert [r.line for r in group_lines(first + again, breaks=[day(130)])] == [1, 2]


def test_a_dose_on_the_day_of_the_break_stays_in_the_line_and_the_next_day_starts_a_new_one() -> (
    None
):
    doses = [*q21(["carboplatin", "paclitaxel"], 6), adm(106, "paclitaxel")]
    assert [r.line for r in group_lines(doses, breaks=[day(106)])] == [1]
    # the day after: the break (day 105) is before it
    assert [r.line for r in group_lines(doses, breaks=[day(105)])] == [1, 2]


def test_a_break_on_a_lines_first_day_does_not_end_that_line() -> None:
    first = q21(["carboplatin", "paclitaxel"], 6)
    second = q21(["carboplatin", "gemcitabine"], 3, start=300)
    regimens = group_lines(first + second, breaks=[day(300)])
    assert summary(regimens) == [
        (1, False, ["carboplatin", "paclitaxel"], 6),
        (2, False, ["carboplatin", "gemcitabine"], 3),
    ]


def test_a_progression_during_the_line_splits_it() -> None:
    doses = q21(["carboplatin", "paclitaxel"], 6)
    regimens = group_lines(doses, breaks=[day(50)])  # PD after the third cycle (day 42)
    assert [(r.line, r.cycles) for r in regimens] == [(1, 3), (2, 3)]


def test_maintenance_running_past_a_recurrence_ends_on_its_date() -> None:
    doses = [*q21(["carboplatin", "paclitaxel"], 6), adm(140, "olaparib", end=600)]
    regimens = group_lines(doses, breaks=[day(400)])
    assert summary(regimens) == [
        (1, False, ["carboplatin", "paclitaxel"], 6),
        (1, True, ["olaparib"], 1),
    ]
    assert regimens[1].end == day(400)
    # without the break the course keeps its own end
    assert group_lines(doses)[1].end == day(600)


def test_maintenance_doses_after_a_recurrence_join_the_next_line_started_within_28_days() -> None:
    doses = [*q21(["carboplatin", "paclitaxel", "bevacizumab"], 6)]
    doses += [adm(105 + 21 * k, "bevacizumab") for k in range(1, 5)]  # days 126..189
    doses += q21(["carboplatin", "gemcitabine"], 3, start=189 + 20)  # 20 days after: joins
    regimens = group_lines(doses, breaks=[day(180)])
    assert [(r.line, r.maintenance, r.drugs) for r in regimens] == [
        (1, False, ["bevacizumab", "carboplatin", "paclitaxel"]),
        (1, True, ["bevacizumab"]),
        (2, False, ["bevacizumab", "carboplatin", "gemcitabine"]),
    ]


def test_breaks_before_the_first_dose_change_nothing() -> None:
    doses = q21(["carboplatin", "paclitaxel"], 6)
    assert summary(group_lines(doses, breaks=[day(-30), day(0)])) == summary(group_lines(doses))
