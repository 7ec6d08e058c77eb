"""Recurrences before randomisation, numbered.

Definition (RESCUE site data specification, "recurrence" row, after mCODE's CancerDiseaseStatus):
a recurrence is a worsening after the end of first-line treatment that follows a documented
time without disease. A worsening is a disease status "worsened", imaging progressive disease,
or the onset of a secondary cancer condition; a time without disease is a status of no evidence
of disease / complete response, or a normal CA-125 (below the upper limit of normal, or below
the detection limit). Each further recurrence needs a new time without disease after the one
before. Nothing up to the end of first-line chemotherapy counts (metastases present at diagnosis
are not recurrences), and nothing after the cut-off (randomisation, else consent): a worsening
after randomisation is progression, not a recurrence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

EventKind = Literal["disease_free", "worsening"]


@dataclass(frozen=True)
class DiseaseEvent:
    day: date
    kind: EventKind
    source_type: str
    source_id: str


@dataclass(frozen=True)
class Recurrence:
    number: int
    day: date
    source_type: str
    source_id: str


def find_recurrences(
    events: Iterable[DiseaseEvent], *, first_line_end: date, until: date
) -> list[Recurrence]:
    """Numbered recurrences in (first_line_end, until]; same-day events: disease-free first."""
    found: list[Recurrence] = []
    disease_free = False
    ordered = sorted(events, key=lambda e: (e.day, e.kind != "disease_free", e.source_id))
    for event in ordered:
        if event.day <= first_line_end or event.day > until:
            continue
        if event.kind == "disease_free":
            disease_free = True
        elif disease_free:
            found.append(Recurrence(len(found) + 1, event.day, event.source_type, event.source_id))
            disease_free = False
    return found
