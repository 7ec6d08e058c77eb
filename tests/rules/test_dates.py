"""Partial dates and ages on worked examples (rule book §1 "Dates", §6 IN04)."""

from __future__ import annotations

from datetime import date

from rescue_pipeline.rules.dates import age_bounds, completed_years, date_bounds


def test_a_full_date_and_a_datetime_give_their_local_date() -> None:
    assert date_bounds("1960-05-17") == (date(1960, 5, 17), date(1960, 5, 17))
    # the offset is not applied: 23:30 at -05:00 is still the 17th
    assert date_bounds("1960-05-17T23:30:00-05:00") == (date(1960, 5, 17), date(1960, 5, 17))


def test_a_month_allows_every_day_of_it_and_a_year_every_day_of_the_year() -> None:
    assert date_bounds("1960-02") == (date(1960, 2, 1), date(1960, 2, 29))  # leap year
    assert date_bounds("1961-02") == (date(1961, 2, 1), date(1961, 2, 28))
    assert date_bounds("1960") == (date(1960, 1, 1), date(1960, 12, 31))


def test_what_is_not_a_date_gives_nothing() -> None:
    for text in (None, "", "May 1960", "1960-13", "1960-02-30"):
        assert date_bounds(text) is None, text


def test_the_19th_birthday_on_the_consent_date_counts() -> None:
    assert completed_years(date(2005, 6, 15), date(2024, 6, 15)) == 19
    assert completed_years(date(2005, 6, 15), date(2024, 6, 14)) == 18


def test_a_29_february_birthday_turns_on_1_march_in_a_common_year() -> None:
    assert completed_years(date(2004, 2, 29), date(2023, 2, 28)) == 18
    assert completed_years(date(2004, 2, 29), date(2023, 3, 1)) == 19


def test_a_birth_month_decides_the_age_when_every_day_of_it_agrees() -> None:
    # born some day in May 1960; on 2024-06-10 every day of May gives 64
    assert age_bounds("1960-05", date(2024, 6, 10)) == (64, 64)
    # on 2024-05-10: born 1..10 May -> 64, born 11..31 May -> 63
    assert age_bounds("1960-05", date(2024, 5, 10)) == (63, 64)


def test_a_birth_year_alone_gives_a_one_year_range_except_on_31_december() -> None:
    assert age_bounds("1960", date(2024, 7, 1)) == (63, 64)
    assert age_bounds("1960", date(2024, 12, 31)) == (64, 64)


def test_no_birth_date_or_no_reference_date_gives_no_age() -> None:
    assert age_bounds(None, date(2024, 1, 1)) is None
    assert age_bounds("1960-05-17", None) is None
