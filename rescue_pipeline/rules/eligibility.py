"""RESCUE eligibility (NCT07295132 protocol, inclusion IN01-IN06 and exclusion EX01-EX08).

One function per criterion, each returning `met` / `not_met` / `unknown`, the value it decided
on, and the source resource ids. For an exclusion, `met` means it applies. Each function cites
the rule book section it implements (RESCUE clinical rules, "how eligibility and PFS are read
from site data"); the README summarises them. In short:
- §6: an inclusion with no data is `unknown`; an exclusion whose trigger is recorded nowhere is
  `not_met`; overall `no` beats `unknown` beats `yes`.
- §2: only records in the screening window count (rules/screening.py); the caller cuts them.
  The screened recurrence is the latest recurrence the caller passes (cut at consent).
- §4: PFI = days from the last platinum dose before the screened recurrence to it; the cycles
  after it and maintenance do not count; sensitive = PFI >= `pfi_days` (183 = 6 x 30.4375).
- §5: IN03 reads the last tumour assessment after the first post-recurrence platinum dose
  (RECIST CR/PR/SD -> met, PD -> not_met); RECIST absent or NE -> GCIG CA-125 (rules/gcig.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from rescue_pipeline.rules.gcig import GcigResponse

Status = Literal["met", "not_met", "unknown"]
CRITERIA = (
    "IN01", "IN02", "IN03", "IN04", "IN05", "IN06",
    "EX01", "EX02", "EX03", "EX04", "EX05", "EX06", "EX07", "EX08",
)  # fmt: skip
MIN_AGE = 19
REFRACTORY_DAYS_AFTER_LAST_DOSE = 28


@dataclass(frozen=True)
class Dated:
    day: date
    source_id: str


@dataclass(frozen=True)
class ScreeningFacts:
    """What screening decides on, all already cut at the screening cut-off by the caller."""

    recurrences: tuple[Dated, ...] = ()  # numbered in order
    has_disease_status_records: bool = False
    primary_site: str | None = None  # ovary, fallopian_tube, primary_peritoneal, other
    behaviour: str | None = None  # invasive, borderline, ...
    histology_class: str | None = None  # epithelial, non_epithelial
    histology_code: str | None = None
    diagnosis_source: str | None = None
    primary_code: str | None = None  # the standard code the primary site was read from
    platinum_doses: tuple[Dated, ...] = ()
    first_line_platinum: tuple[Dated, ...] = ()  # platinum doses of line 1 (first-line PFI)
    worsenings: tuple[Dated, ...] = ()  # disease status worsened, tumour assessment PD
    last_assessment_after_first_cycle: tuple[str, str] | None = None  # (response, source id)
    gcig: GcigResponse | None = None
    age_range: tuple[int, int] | None = None  # (youngest, oldest) over a partial birth date
    age_basis: str | None = None  # the date the age is taken on: consent, else randomisation
    subject_source: str | None = None
    resectability: Dated | None = None  # judged_on + source
    resectability_judgement: str | None = None
    consent_on: date | None = None
    consent_data_transfer: bool | None = None
    interfering_malignancy: tuple[Dated, ...] = ()  # findings recorded present
    comorbidity: tuple[Dated, ...] = ()


@dataclass(frozen=True)
class Criterion:
    code: str
    status: Status
    value: str | None
    evidence: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Derived:
    """Screening facts computed from the raw facts, shared by several criteria."""

    recurrence: Dated | None
    pfi_days: int | None
    last_platinum: Dated | None
    post_recurrence_doses: tuple[Dated, ...]


def derive(f: ScreeningFacts) -> Derived:
    rec = f.recurrences[-1] if f.recurrences else None
    before = [d for d in f.platinum_doses if rec is not None and d.day < rec.day]
    last = max(before, key=lambda d: d.day) if before else None
    pfi = (rec.day - last.day).days if rec is not None and last is not None else None
    post = tuple(sorted((d for d in f.platinum_doses if rec and d.day > rec.day), key=_day))
    return Derived(rec, pfi, last, post)


def _day(d: Dated) -> date:
    return d.day


def _status(ok: bool) -> Status:
    return "met" if ok else "not_met"


def in01(f: ScreeningFacts, d: Derived) -> Criterion:
    """First recurrence of invasive epithelial ovarian, tubal or primary peritoneal cancer.

    A primary recorded with a standard code outside these sites (primary_site other, e.g. C57.4)
    is not_met; one coded only with an unmapped local code reaches here with no primary site and
    stays unknown (rule book §6 IN01, §1 codes with their descendants)."""
    src = tuple(x for x in (f.diagnosis_source,) if x)
    if f.histology_class == "non_epithelial" or f.behaviour == "borderline":
        return Criterion("IN01", "not_met", f"histology {f.histology_code}", src)
    if f.primary_site == "other":
        return Criterion("IN01", "not_met", f"primary site other ({f.primary_code})", src)
    if d.recurrence is None:
        status: Status = "not_met" if f.has_disease_status_records else "unknown"
        return Criterion("IN01", status, "no recurrence recorded", src)
    number = len(f.recurrences)
    evidence = (*src, d.recurrence.source_id)
    if f.primary_site is None or f.histology_class is None or f.behaviour is None:
        return Criterion("IN01", "unknown", "primary cancer not recorded", evidence)
    return Criterion(
        "IN01", _status(number == 1), f"recurrence {number} of {f.primary_site}", evidence
    )


def in02(f: ScreeningFacts, d: Derived, pfi_days: int) -> Criterion:
    """Platinum-free interval of at least 6 months, `pfi_days` (rule book §4)."""
    if d.pfi_days is None or d.last_platinum is None or d.recurrence is None:
        return Criterion("IN02", "unknown", None)
    evidence = (d.last_platinum.source_id, d.recurrence.source_id)
    return Criterion("IN02", _status(d.pfi_days >= pfi_days), f"PFI {d.pfi_days} days", evidence)


def in03(f: ScreeningFacts, d: Derived) -> Criterion:
    """Response to the 3-4 post-recurrence cycles: RECIST, else GCIG CA-125 (rule book §5)."""
    recist = f.last_assessment_after_first_cycle
    gcig = f.gcig
    if recist and recist[0] in ("CR", "PR", "SD"):
        return Criterion("IN03", "met", f"RECIST {recist[0]}", (recist[1],))
    if recist and recist[0] == "PD":
        return Criterion("IN03", "not_met", "RECIST PD", (recist[1],))
    if gcig is not None and gcig.outcome == "response":
        return Criterion("IN03", "met", f"GCIG CA-125 response on {gcig.day}", gcig.evidence)
    if recist is None and gcig is not None and gcig.outcome == "no_response":
        return Criterion("IN03", "not_met", "GCIG CA-125 no response", gcig.evidence)
    outcome = gcig.outcome if gcig else "not_evaluable"
    evidence = (recist[1],) if recist else ()
    return Criterion("IN03", "unknown", f"RECIST {recist[0] if recist else 'absent'}; "
                     f"CA-125 {outcome.replace('_', ' ')}", evidence)  # fmt: skip


def in04(f: ScreeningFacts) -> Criterion:
    """Age 19 or over in completed years on the consent date, else on the randomisation date
    (rule book §6 IN04); a partial birth date decides only when every day it allows gives the
    same answer (§1 "Dates"), so `age_range` spans the youngest and the oldest possible age."""
    if f.age_range is None:
        return Criterion("IN04", "unknown", "no birth date or no consent or randomisation date")
    low, high = f.age_range
    src = (f.subject_source,) if f.subject_source else ()
    age = f"age {low}" if low == high else f"age {low}-{high} (partial birth date)"
    value = f"{age} on the {f.age_basis or 'consent'} date"
    if low >= MIN_AGE:
        return Criterion("IN04", "met", value, src)
    if high < MIN_AGE:
        return Criterion("IN04", "not_met", value, src)
    return Criterion("IN04", "unknown", value, src)


def in05(f: ScreeningFacts) -> Criterion:
    """Judged completely resectable by the surgeon: the latest judgement in the window (§6)."""
    if f.resectability is None:
        return Criterion("IN05", "unknown", None)
    judgement = f.resectability_judgement
    ok = judgement == "complete-resection-feasible"
    return Criterion("IN05", _status(ok), judgement, (f.resectability.source_id,))


def in06(f: ScreeningFacts) -> Criterion:
    """An active research consent permitting disclose (data transfer); none is `unknown` (§6)."""
    if f.consent_on is None or f.consent_data_transfer is None:
        return Criterion("IN06", "unknown", None)
    value = "permits data transfer" if f.consent_data_transfer else "no data transfer"
    src = (f.subject_source,) if f.subject_source else ()
    return Criterion("IN06", _status(f.consent_data_transfer), value, src)


def ex01(f: ScreeningFacts, d: Derived) -> Criterion:
    """No recurrence (rule book §3): met when disease-status records exist and show none."""
    if d.recurrence is not None:
        return Criterion("EX01", "not_met", f"recurrence on {d.recurrence.day}",
                         (d.recurrence.source_id,))  # fmt: skip
    if f.has_disease_status_records:
        return Criterion("EX01", "met", "disease-status records show no recurrence")
    return Criterion("EX01", "unknown", "no disease-status records")


def ex02(f: ScreeningFacts) -> Criterion:
    """Non-epithelial or borderline tumour (rule book §6 IN01)."""
    src = (f.diagnosis_source,) if f.diagnosis_source else ()
    bad = f.histology_class == "non_epithelial" or f.behaviour == "borderline"
    return Criterion("EX02", _status(bad), f"histology {f.histology_code}", src)


def ex03(f: ScreeningFacts) -> Criterion:
    """Second or later recurrence (rule book §3: a worsening after a further platinum line)."""
    evidence = tuple(r.source_id for r in f.recurrences)
    n = len(f.recurrences)
    return Criterion("EX03", _status(n >= 2), f"{n} recurrence(s)", evidence)


def ex04(f: ScreeningFacts) -> Criterion:
    """Interfering secondary malignancy, recorded present (rule book §6)."""
    found = f.interfering_malignancy
    return Criterion("EX04", _status(bool(found)), "recorded" if found else "none recorded",
                     tuple(x.source_id for x in found))  # fmt: skip


def first_line_pfi(f: ScreeningFacts) -> tuple[int, Dated, Dated] | None:
    """(days, last first-line platinum dose, first recurrence): the first-line platinum-free
    interval of rule book §4, maintenance ignored; None when either end is not recorded."""
    if not f.recurrences:
        return None
    first = f.recurrences[0]
    before = [x for x in f.first_line_platinum if x.day < first.day]
    if not before:
        return None
    last = max(before, key=_day)
    return (first.day - last.day).days, last, first


def ex05(f: ScreeningFacts, d: Derived, pfi_days: int) -> Criterion:
    """Platinum-refractory or -resistant (rule book §4): progression during the post-recurrence
    chemotherapy (from its first platinum dose to 28 days after its last), or a first-line PFI
    under `pfi_days` ("recurrence within 6 months after the end of the first platinum-containing
    regimen")."""
    if d.post_recurrence_doses:
        start = d.post_recurrence_doses[0].day
        end = d.post_recurrence_doses[-1].day + timedelta(days=REFRACTORY_DAYS_AFTER_LAST_DOSE)
        during = sorted((w for w in f.worsenings if start <= w.day <= end), key=_day)
        if during:
            return Criterion("EX05", "met", f"progression during platinum on {during[0].day}",
                             (during[0].source_id,))  # fmt: skip
    first = first_line_pfi(f)
    if first is not None and first[0] < pfi_days:
        days, last, rec = first
        return Criterion("EX05", "met", f"first recurrence {days} days after first-line platinum",
                         (last.source_id, rec.source_id))  # fmt: skip
    if first is None:
        return Criterion("EX05", "not_met", "no first-line platinum-free interval recorded")
    return Criterion("EX05", "not_met", f"platinum-sensitive (first-line PFI {first[0]} days)")


def _judged(f: ScreeningFacts, code: str, judgement: str) -> Criterion:
    src = (f.resectability.source_id,) if f.resectability else ()
    return Criterion(code, _status(f.resectability_judgement == judgement),
                     f.resectability_judgement, src)  # fmt: skip


def ex08(f: ScreeningFacts) -> Criterion:
    """Comorbidity precluding surgery, recorded present (rule book §6)."""
    found = f.comorbidity
    return Criterion("EX08", _status(bool(found)), "recorded" if found else "none recorded",
                     tuple(x.source_id for x in found))  # fmt: skip


def assess(f: ScreeningFacts, *, pfi_days: int = 183) -> list[Criterion]:
    """All 14 criteria in protocol order."""
    d = derive(f)
    checks: list[Callable[[], Criterion]] = [
        lambda: in01(f, d),
        lambda: in02(f, d, pfi_days),
        lambda: in03(f, d),
        lambda: in04(f),
        lambda: in05(f),
        lambda: in06(f),
        lambda: ex01(f, d),
        lambda: ex02(f),
        lambda: ex03(f),
        lambda: ex04(f),
        lambda: ex05(f, d, pfi_days),
        lambda: _judged(f, "EX06", "palliative-only"),
        lambda: _judged(f, "EX07", "unresectable-metastasis"),
        lambda: ex08(f),
    ]
    return [check() for check in checks]


def summary(criteria: Sequence[Criterion]) -> tuple[str, list[str], list[str]]:
    """(eligible yes/no/unknown, failed criteria, unknown criteria), rule book §6 "Overall"."""
    failed = [
        c.code for c in criteria
        if (c.code.startswith("IN") and c.status == "not_met")
        or (c.code.startswith("EX") and c.status == "met")
    ]  # fmt: skip
    unknown = [c.code for c in criteria if c.status == "unknown"]
    if failed:
        return "no", failed, unknown
    return ("unknown" if unknown else "yes"), failed, unknown
