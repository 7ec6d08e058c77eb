"""Partial dates and ages (rule book §1 "Dates", §6 IN04).

A FHIR date may be partial (`YYYY-MM`, `YYYY`). A partial date decides a rule only when every
full date it allows gives the same answer; otherwise the rule is `unknown`. Ages are in completed
years: a birthday on the reference date counts.
"""

from __future__ import annotations

import calendar
import re
from datetime import date

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def date_bounds(text: str | None) -> tuple[date, date] | None:
    """The earliest and latest full date a (possibly partial) FHIR date or dateTime allows.

    Only the local date as sent counts (rule book §1: the offset is not applied). Anything that
    is not a date gives None.
    """
    if not text:
        return None
    m = _DATE.match(text.strip())
    if m is None:
        return None
    year = int(m[1])
    try:
        if m[3] is not None:
            day = date(year, int(m[2]), int(m[3]))
            return day, day
        if m[2] is not None:
            month = int(m[2])
            last = calendar.monthrange(year, month)[1]
            return date(year, month, 1), date(year, month, last)
        return date(year, 1, 1), date(year, 12, 31)
    except ValueError:
        return None


def completed_years(birth: date, on: date) -> int:
    """Age in completed years on `on` (the birthday itself counts; 29 February turns on 1 March
    in common years, as the calendar has no 29th)."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_bounds(birth: str | None, on: date | None) -> tuple[int, int] | None:
    """(youngest, oldest) completed-years age on `on` over every birth date `birth` allows.

    Age falls as the birth date moves later, so the bounds come from the latest and the earliest
    allowed birth dates. Equal bounds mean the partial date decides the age itself.
    """
    bounds = date_bounds(birth)
    if bounds is None or on is None:
        return None
    earliest, latest = bounds
    if latest > on:
        latest = max(earliest, on)
    if earliest > on:
        return None  # born after the reference date: not an age
    return completed_years(latest, on), completed_years(earliest, on)
