"""Time-to-event parameters (ADaM ADTTE) from declared event and censoring sources (rule book §7).

Modelled on admiral's `derive_param_tte()` (event_source / censor_source objects applied by one
generic derivation), with the PFS censoring rules of the FDA guidance "Clinical Trial Endpoints
for the Approval of Cancer Drugs and Biologics" (2018) and its 2007 predecessor's table, applied
in this order:

1. Event candidate: the earliest of the parameter's events inside the window (randomisation +
   `window_days`, or the data cut-off if earlier).
2. New anticancer therapy before the candidate, or inside the window with no candidate at all
   (PFS, configurable; therapy on the candidate's own day is not before it): censored at the
   last adequate assessment before the therapy, else at randomisation.
3. Candidate after two or more missed assessments, i.e. more than 2 x interval + window days
   after the last adequate assessment (or randomisation): censored at that assessment, else at
   randomisation. Neither admiral nor admiralonco implements this rule; it is written here.
4. Otherwise the candidate is the event (death before the first scheduled assessment included).
5. No candidate: censored at the last adequate assessment inside the window (PFS), or the last
   date known alive (OS, TFST), else at randomisation (AVAL 1).

The window includes both ends. An adequate assessment is one with a response other than NE
(NE and `undetermined` are missed visits; the caller leaves them out).
"Before" is strictly before; on a tie between progression and death the progression is the
documented event (its source is reported). AVAL = ADT - STARTDT + 1 days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Dated:
    day: date
    source_type: str  # SRCDOM: FHIR resource type
    source_id: str  # SRCID
    element: str  # SRCVAR: the FHIR element dated


@dataclass(frozen=True)
class EventSource:
    """An event kind a parameter counts (admiral: event_source)."""

    code: str  # key into the subject's timeline
    description: str  # EVNTDESC


@dataclass(frozen=True)
class CensorRule:
    """A censoring rule (admiral: censor_source); `rule` is its row in the table above."""

    rule: int
    description: str  # CNSDTDSC


@dataclass(frozen=True)
class Parameter:
    paramcd: str
    param: str
    events: tuple[EventSource, ...]
    censor_new_therapy: bool
    censor_missed_assessments: bool
    censor_at_last_alive: bool  # rule 5 uses the last date known alive, not the last assessment


@dataclass(frozen=True)
class Settings:
    data_cutoff: date
    window_days: int = 730
    assessment_interval_days: int = 84
    assessment_window_days: int = 14

    @property
    def missed_days(self) -> int:
        return 2 * self.assessment_interval_days + self.assessment_window_days


@dataclass(frozen=True)
class Timeline:
    """One randomised subject's dated facts after randomisation."""

    start: date
    start_source: Dated
    progression: tuple[Dated, ...] = ()
    death: tuple[Dated, ...] = ()
    subsequent_therapy: tuple[Dated, ...] = ()  # new anticancer therapy after randomisation
    adequate_assessments: tuple[Dated, ...] = ()  # response other than NE, after randomisation
    last_known_alive: Dated | None = None


@dataclass(frozen=True)
class TteRow:
    paramcd: str
    param: str
    startdt: date
    adt: date
    aval: int
    cnsr: int
    evntdesc: str | None
    cnsdtdsc: str | None
    srcdom: str
    srcvar: str
    srcid: str
    rule: int


NEW_THERAPY = CensorRule(2, "Last adequate assessment before new anticancer therapy")
MISSED = CensorRule(3, "Last adequate assessment before two or more missed assessments")
NO_EVENT = CensorRule(5, "Last adequate assessment")
NO_EVENT_ALIVE = CensorRule(5, "Last date known alive")
RANDOMISATION = "Randomisation (no adequate assessment)"

PFS = Parameter(
    "PFS", "Progression-free survival (days)",
    (EventSource("progression", "Documented progression"), EventSource("death", "Death")),
    censor_new_therapy=True, censor_missed_assessments=True, censor_at_last_alive=False,
)  # fmt: skip
OS = Parameter(
    "OS", "Overall survival (days)", (EventSource("death", "Death"),),
    censor_new_therapy=False, censor_missed_assessments=False, censor_at_last_alive=True,
)  # fmt: skip
TFST = Parameter(
    "TFST", "Time to first subsequent anticancer therapy or death (days)",
    (EventSource("subsequent_therapy", "First subsequent anticancer therapy"),
     EventSource("death", "Death")),
    censor_new_therapy=False, censor_missed_assessments=False, censor_at_last_alive=True,
)  # fmt: skip


def _row(p: Parameter, t: Timeline, at: Dated, cnsr: int, rule: int, text: str) -> TteRow:
    return TteRow(
        paramcd=p.paramcd,
        param=p.param,
        startdt=t.start,
        adt=at.day,
        aval=(at.day - t.start).days + 1,
        cnsr=cnsr,
        evntdesc=text if cnsr == 0 else None,
        cnsdtdsc=text if cnsr == 1 else None,
        srcdom=at.source_type,
        srcvar=at.element,
        srcid=at.source_id,
        rule=rule,
    )


def _last_before(items: Sequence[Dated], day: date) -> Dated | None:
    before = [x for x in items if x.day < day]
    return max(before, key=lambda x: (x.day, x.source_id)) if before else None


def derive(p: Parameter, t: Timeline, s: Settings, *, censor_new_therapy: bool = True) -> TteRow:
    """One ADTTE row for parameter `p` (rules 1-5 above, in order)."""
    window_end = min(t.start + timedelta(days=s.window_days), s.data_cutoff)
    candidates: list[tuple[date, int, Dated, EventSource]] = []
    for order, source in enumerate(p.events):
        items = [x for x in getattr(t, source.code) if x.day > t.start or source.code == "death"]
        first = min(items, key=lambda x: (x.day, x.source_id)) if items else None
        if first is not None and first.day <= window_end:
            candidates.append((first.day, order, first, source))
    adequate = sorted(t.adequate_assessments, key=lambda x: (x.day, x.source_id))
    therapy = [x for x in t.subsequent_therapy if x.day > t.start]
    first_therapy = min(therapy, key=lambda x: (x.day, x.source_id)) if therapy else None
    censors_therapy = p.censor_new_therapy and censor_new_therapy and first_therapy is not None
    if candidates:
        day, _order, event, source = min(candidates, key=lambda c: (c[0], c[1]))
        if censors_therapy and first_therapy is not None and first_therapy.day < day:
            last = _last_before(adequate, first_therapy.day)
            return _row(p, t, last or t.start_source, 1, 2,
                        NEW_THERAPY.description if last else RANDOMISATION)  # fmt: skip
        last = _last_before(adequate, day)
        since = (day - (last.day if last else t.start)).days
        if p.censor_missed_assessments and since > s.missed_days:
            return _row(p, t, last or t.start_source, 1, 3,
                        MISSED.description if last else RANDOMISATION)  # fmt: skip
        return _row(p, t, event, 0, 4, source.description)
    if censors_therapy and first_therapy is not None and first_therapy.day <= window_end:
        # rule 2 also covers new therapy with no candidate in the window (rule book §7)
        last = _last_before(adequate, first_therapy.day)
        return _row(p, t, last or t.start_source, 1, 2,
                    NEW_THERAPY.description if last else RANDOMISATION)  # fmt: skip
    if p.censor_at_last_alive:
        alive = t.last_known_alive
        if alive is not None and t.start < alive.day <= window_end:
            return _row(p, t, alive, 1, 5, NO_EVENT_ALIVE.description)
        return _row(p, t, t.start_source, 1, 5, RANDOMISATION)
    inside = [x for x in adequate if t.start < x.day <= window_end]
    if inside:
        return _row(p, t, inside[-1], 1, 5, NO_EVENT.description)
    return _row(p, t, t.start_source, 1, 5, RANDOMISATION)
