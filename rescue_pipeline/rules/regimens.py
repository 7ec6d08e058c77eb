"""Lines of therapy from drug administrations (rule book §3, "Lines of therapy").

The rule follows the common real-world-data line-of-therapy conventions (e.g. Flatiron Health's
oncology LoT rules; Hess et al., "Identifying lines of therapy in oncology", JCO CCI 2021),
narrowed to this trial's drugs:

1. A line starts with the first administration. Drugs first given within `window_days` (28) of
   the line's start make up its regimen (a doublet started a few days apart is one regimen).
2. After that window, a new drug of the same class as one in the regimen (carboplatin <-> cisplatin,
   paclitaxel <-> docetaxel) is a switch within the line, not a new line.
3. Maintenance drugs (PARP inhibitors, bevacizumab) never start a line by themselves.
4. A non-maintenance drug starts a new line when it is new to the regimen after the window, or
   when more than `gap_days` (configurable, default 90) have passed since the line's last
   non-maintenance administration (a re-challenge after maintenance or after a break). Any drug
   more than `gap_days` after the line's last administration (or oral course end) starts one too.
5. Maintenance drugs given after the line's last non-maintenance administration form the line's
   maintenance phase: a second regimen row of the same line, flagged maintenance. A line of
   maintenance drugs only (bevacizumab or a PARP inhibitor alone) is flagged maintenance too.
6. A documented recurrence or progression (a `break`) always ends the line in progress
   **[convention]**: any drug given after it starts a new line however short the gap (a drug
   started within `window_days` of that new line's start joins its regimen, as in 1), and an
   oral course running past it ends on the break's date. A dose on the day of the break still
   belongs to the line in progress, and a break on a line's first day does not end it.
   Without this, a platinum-resistant recurrence treated less than `gap_days` after the first
   line would merge the two lines and hide the recurrence.

Cycles: an administration of the regimen's anchor drugs (platinum when the regimen has one)
starts a new cycle when it is at least 14 days after the previous cycle's start, so day-8 and
day-15 doses belong to their cycle (GCIG cycle reporting).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

CYCLE_MIN_DAYS = 14


class Administration(NamedTuple):
    """One dose, or an oral course (a tuple: hundreds of thousands are made per build)."""

    day: date
    drug: str  # ingredient name, e.g. "carboplatin"
    drug_class: str  # e.g. "platinum", "taxane", "parp_inhibitor", "anti_vegf"
    platinum: bool
    maintenance_capable: bool  # PARP inhibitors, bevacizumab
    source_type: str
    source_id: str
    end: date | None = None  # oral courses sent as a period


@dataclass
class Regimen:
    line: int
    maintenance: bool
    administrations: list[Administration] = field(default_factory=list)

    @property
    def drugs(self) -> list[str]:
        return sorted({a.drug for a in self.administrations})

    @property
    def start(self) -> date:
        return min(a.day for a in self.administrations)

    @property
    def end(self) -> date:
        return max(a.end or a.day for a in self.administrations)

    @property
    def platinum(self) -> bool:
        return any(a.platinum for a in self.administrations)

    @property
    def cycles(self) -> int:
        anchors = [a for a in self.administrations if a.platinum] or self.administrations
        return count_cycles(a.day for a in anchors)


def count_cycles(days: Iterable[date]) -> int:
    """Cycle starts: a dose at least 14 days after the previous cycle's start begins a cycle."""
    count, start = 0, None
    for day in sorted(days):
        if start is None or (day - start).days >= CYCLE_MIN_DAYS:
            count, start = count + 1, day
    return count


@dataclass
class _Line:
    """A line being built, with the running facts the rules look at (no rescans)."""

    start: date
    administrations: list[Administration] = field(default_factory=list)
    last_any: date = date.min
    last_chemo: date | None = None
    regimen: set[str] = field(default_factory=set)  # drugs of the first `window_days`
    classes: set[str] = field(default_factory=set)  # classes of its non-maintenance drugs

    def add(self, adm: Administration, window_days: int) -> None:
        self.administrations.append(adm)
        self.last_any = max(self.last_any, adm.end or adm.day)
        if (adm.day - self.start).days < window_days:
            self.regimen.add(adm.drug)
        if not adm.maintenance_capable:
            self.last_chemo = adm.day if self.last_chemo is None else max(self.last_chemo, adm.day)
            self.classes.add(adm.drug_class)

    def starts_new(self, adm: Administration, gap_days: int, window_days: int) -> bool:
        if (adm.day - self.last_any).days > gap_days:
            return True
        if adm.maintenance_capable:
            return False
        if self.last_chemo is not None and (adm.day - self.last_chemo).days > gap_days:
            return True
        if (adm.day - self.start).days < window_days:
            return False
        return adm.drug not in self.regimen and adm.drug_class not in self.classes


def _crosses_break(line: _Line, day: date, breaks: Sequence[date]) -> bool:
    """Whether a documented recurrence or progression falls after `line` began and before `day`
    (rule 6): strictly after the line's first day (a line that starts on the day of a recurrence
    treats it), strictly before the new administration's day."""
    i = bisect.bisect_right(breaks, line.start)
    return i < len(breaks) and breaks[i] < day


def _cut_at_break(adm: Administration, breaks: Sequence[date]) -> Administration:
    """An oral course running past a break ends on the break's date (rule 6)."""
    if adm.end is None:
        return adm
    i = bisect.bisect_right(breaks, adm.day)
    if i < len(breaks) and breaks[i] < adm.end:
        return adm._replace(end=breaks[i])
    return adm


def group_lines(
    administrations: Sequence[Administration],
    *,
    gap_days: int = 90,
    window_days: int = 28,
    breaks: Iterable[date] = (),
) -> list[Regimen]:
    """Regimen rows in time order for one subject's administrations (given in any order).

    `breaks` are the dates of the subject's documented recurrences and progressions (worsened
    disease status, RECIST PD, a secondary cancer's onset after diagnosis), in any order.
    """
    stops = sorted(set(breaks))
    lines: list[_Line] = []
    for adm in sorted(administrations, key=lambda a: (a.day, a.drug, a.source_id)):
        if stops:
            adm = _cut_at_break(adm, stops)
        if (
            not lines
            or (stops and _crosses_break(lines[-1], adm.day, stops))
            or lines[-1].starts_new(adm, gap_days, window_days)
        ):
            lines.append(_Line(adm.day))
        lines[-1].add(adm, window_days)
    out: list[Regimen] = []
    for number, line in enumerate(lines, start=1):
        if line.last_chemo is None:
            out.append(Regimen(number, True, line.administrations))
            continue
        last = line.last_chemo
        treatment = [
            a for a in line.administrations if not (a.maintenance_capable and a.day > last)
        ]
        maintenance = [a for a in line.administrations if a.maintenance_capable and a.day > last]
        out.append(Regimen(number, False, treatment))
        if maintenance:
            out.append(Regimen(number, True, maintenance))
    return out
