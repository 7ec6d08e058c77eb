"""Deciding a criterion over every date a partial date allows (rule book §1 "Dates").

A record dated `YYYY-MM` or `YYYY` could have happened on any day of that month or year. A rule
it feeds decides only when every such day gives the same answer; otherwise the rule is
`unknown`. The caller builds one reading of the subject per combination of days (`readings`),
runs the ordinary rules on each, and `agree` keeps what every reading agrees on.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from typing import TypeVar

from rescue_pipeline.rules.eligibility import Criterion

T = TypeVar("T")
READINGS_BUDGET = 4096
"""The most combinations tried in full. Beyond it each record is tried on its first and last
day only (and outside the window where it may be): a rule whose answer changes only inside a
month of several partial records may then be missed, which the data query for the partial dates
still shows."""


def days_allowed(earliest: date, latest: date, until: date) -> list[date | None]:
    """Every full day in [earliest, latest] that falls in the screening window (on or before
    `until`), then None when some allowed day falls after the window (the record then does not
    count, rule book §2)."""
    last = min(latest, until)
    days: list[date | None] = [
        earliest + timedelta(days=k) for k in range((last - earliest).days + 1)
    ]
    if latest > until:
        days.append(None)
    return days


def readings(
    options: Sequence[Sequence[T]], budget: int = READINGS_BUDGET
) -> Iterator[tuple[T, ...]]:
    """Every combination of one option per record, or, when there are more than `budget`, the
    combinations of each record's first and last option (at most `budget` of them)."""
    total = 1
    for opts in options:
        total *= max(len(opts), 1)
        if total > budget:
            break
    if total <= budget:
        yield from itertools.product(*options)
        return
    ends = [list(dict.fromkeys((opts[0], opts[-1]))) for opts in options]
    yield from itertools.islice(itertools.product(*ends), budget)


def agree(
    per_reading: Sequence[Sequence[Criterion]], partial_sources: Sequence[str]
) -> list[Criterion]:
    """Per criterion: the status every reading gives, or `unknown` where they differ.

    The value stays when every reading gives the same one; the evidence is every reading's. An
    `unknown` names first the partially dated records it read on some day (else all of them)."""
    if not per_reading:
        return []
    out: list[Criterion] = []
    for position, first in enumerate(per_reading[0]):
        column = [reading[position] for reading in per_reading]
        statuses = sorted({c.status for c in column})
        evidence = list(dict.fromkeys(e for c in column for e in c.evidence))
        if len(statuses) == 1:
            values = {c.value for c in column}
            value = (
                first.value
                if len(values) == 1
                else f"{first.status} on every day a partial date allows"
            )
            out.append(Criterion(first.code, first.status, value, tuple(evidence)))
            continue
        # name the partially dated records this criterion read on some day, else all of them
        named = [s for s in partial_sources if s in evidence] or list(partial_sources)
        evidence = named + [e for e in evidence if e not in named]
        out.append(
            Criterion(
                first.code,
                "unknown",
                f"{' or '.join(statuses)}, by where a partial date falls",
                tuple(evidence),
            )
        )
    return out
