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
from dataclasses import dataclass, fields
from datetime import date, timedelta


@dataclass(frozen=True)
class Dated:
    day: date
    source_type: str  # the FHIR resource type (SRCFTYP)
    source_id: str  # SRCID
    element: str  # the FHIR element dated (SRCFELM)
    domain: str = ""  # SRCDOM: the ADaM dataset or SDTM domain the record belongs in (ADSL, RS)
    variable: str = ""  # SRCVAR: its variable there (RANDDT, RSDTC)


@dataclass(frozen=True)
class EventSource:
    """An event kind a parameter counts (admiral: event_source): the timeline field it reads,
    and its EVNTDESC. SRCDOM / SRCVAR / SRCID (and the FHIR provenance) come from the dated
    record chosen: one field draws on several kinds of record."""

    field: str  # a Timeline field holding Dated records
    description: str  # EVNTDESC

    def __post_init__(self) -> None:
        if self.field not in _DATED_FIELDS:
            raise ValueError(f"event source {self.field!r} is not a dated Timeline field")

    def dates(self, t: Timeline) -> tuple[Dated, ...]:
        dated: tuple[Dated, ...] = getattr(t, self.field)
        return dated


@dataclass(frozen=True)
class Rule:
    """A row of the rule table above (admiral: event_source / censor_source): its number, CNSR
    and the text that says it decided (EVNTDESC for the event, CNSDTDSC for a censoring)."""

    row: int
    cnsr: int
    description: str


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


# The Timeline fields an EventSource may name: those holding dated records.
_DATED_FIELDS = frozenset(f.name for f in fields(Timeline) if "tuple[Dated" in str(f.type))


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
    fhir_type: str = ""
    fhir_element: str = ""


NEW_THERAPY = Rule(2, 1, "Last adequate assessment before new anticancer therapy")
MISSED = Rule(3, 1, "Last adequate assessment before two or more missed assessments")
EVENT = Rule(4, 0, "")  # the event source's own description is EVNTDESC
NO_EVENT = Rule(5, 1, "Last adequate assessment")
NO_EVENT_ALIVE = Rule(5, 1, "Last date known alive")
# A censoring rule whose date does not exist (no adequate assessment) falls back to this.
RANDOMISATION = "Randomisation (no adequate assessment)"

PROGRESSION = EventSource("progression", "Documented progression")
DEATH = EventSource("death", "Death")
SUBSEQUENT_THERAPY = EventSource("subsequent_therapy", "First subsequent anticancer therapy")

PFS = Parameter(
    "PFS", "Progression-free survival (days)", (PROGRESSION, DEATH),
    censor_new_therapy=True, censor_missed_assessments=True, censor_at_last_alive=False,
)  # fmt: skip
OS = Parameter(
    "OS", "Overall survival (days)", (DEATH,),
    censor_new_therapy=False, censor_missed_assessments=False, censor_at_last_alive=True,
)  # fmt: skip
TFST = Parameter(
    "TFST", "Time to first subsequent anticancer therapy or death (days)",
    (SUBSEQUENT_THERAPY, DEATH),
    censor_new_therapy=False, censor_missed_assessments=False, censor_at_last_alive=True,
)  # fmt: skip

# Every parameter derived, in PARAMN order (PFS = 1).
PARAMETERS = (PFS, OS, TFST)


def _row(p: Parameter, t: Timeline, rule: Rule, at: Dated | None, text: str = "") -> TteRow:
    """The row `rule` decides, dated by `at` (None: the rule's date does not exist, so
    randomisation, and the text says so)."""
    when = at or t.start_source
    said = text or (rule.description if at is not None else RANDOMISATION)
    return TteRow(
        paramcd=p.paramcd,
        param=p.param,
        startdt=t.start,
        adt=when.day,
        aval=(when.day - t.start).days + 1,
        cnsr=rule.cnsr,
        evntdesc=said if rule.cnsr == 0 else None,
        cnsdtdsc=said if rule.cnsr == 1 else None,
        srcdom=when.domain,
        srcvar=when.variable,
        srcid=when.source_id,
        rule=rule.row,
        fhir_type=when.source_type,
        fhir_element=when.element,
    )


def _key(x: Dated) -> tuple[date, str, str, str]:
    """A total order on records: what comes first never depends on the order rows arrived in."""
    return (x.day, x.source_id, x.source_type, x.element)


def _first(items: Sequence[Dated]) -> Dated | None:
    return min(items, key=_key) if items else None


def _last_before(items: Sequence[Dated], day: date) -> Dated | None:
    before = [x for x in items if x.day < day]
    return max(before, key=_key) if before else None


def derive(p: Parameter, t: Timeline, s: Settings, *, censor_new_therapy: bool = True) -> TteRow:
    """One ADTTE row for parameter `p`: the rules of the table above, in order."""
    window_end = min(t.start + timedelta(days=s.window_days), s.data_cutoff)
    candidates: list[tuple[date, int, Dated, EventSource]] = []
    for order, source in enumerate(p.events):  # rule 1
        first = _first([x for x in source.dates(t) if x.day > t.start or source is DEATH])
        if first is not None and first.day <= window_end:
            candidates.append((first.day, order, first, source))
    adequate = sorted(t.adequate_assessments, key=_key)
    first_therapy = _first([x for x in t.subsequent_therapy if x.day > t.start])
    censors_therapy = p.censor_new_therapy and censor_new_therapy and first_therapy is not None
    if candidates:
        day, _order, event, source = min(candidates, key=lambda c: (c[0], c[1]))
        if censors_therapy and first_therapy is not None and first_therapy.day < day:  # rule 2
            return _row(p, t, NEW_THERAPY, _last_before(adequate, first_therapy.day))
        last = _last_before(adequate, day)
        since = (day - (last.day if last else t.start)).days
        if p.censor_missed_assessments and since > s.missed_days:  # rule 3
            return _row(p, t, MISSED, last)
        return _row(p, t, EVENT, event, source.description)  # rule 4
    if censors_therapy and first_therapy is not None and first_therapy.day <= window_end:
        # rule 2 also covers new therapy with no candidate in the window (rule book §7)
        return _row(p, t, NEW_THERAPY, _last_before(adequate, first_therapy.day))
    if p.censor_at_last_alive:  # rule 5
        alive = t.last_known_alive
        inside_alive = alive is not None and t.start < alive.day <= window_end
        return _row(p, t, NO_EVENT_ALIVE, alive if inside_alive else None)
    inside = [x for x in adequate if t.start < x.day <= window_end]
    return _row(p, t, NO_EVENT, inside[-1] if inside else None)
