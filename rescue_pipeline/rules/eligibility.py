"""RESCUE eligibility (NCT07295132 protocol, inclusion IN01-IN06 and exclusion EX01-EX08).

One function per criterion, each returning `met` / `not_met` / `unknown`, the value it decided
on, and the source resource ids. For an exclusion, `met` means it applies. Conventions (issue 5):
an inclusion with no data is `unknown`; EX01 is decided from evidence like IN01; for EX02-EX08 a
trigger recorded nowhere is `not_met`.

Readings where the protocol text leaves room (the synthetic ground truth shares them):
- Only records dated up to the screening cut-off count: randomisation, else consent.
- The screened recurrence is the latest recurrence up to that cut-off.
- Platinum-free interval (PFI): days from the last platinum dose before the screened recurrence
  to the recurrence; the cycles given after it (before randomisation) and maintenance do not
  count. Platinum-sensitive = PFI >= `pfi_days` (183 = 6 x 30.4375, the ADaM month).
- IN01 is the disease (invasive epithelial ovarian / tubal / primary peritoneal cancer whose
  screened recurrence is the first); platinum sensitivity is judged by IN02 and EX05.
- IN03 reads the last tumour assessment after the first post-recurrence platinum dose: RECIST
  CR/PR/SD -> met, PD -> not_met; RECIST absent or NE -> GCIG CA-125 response (rules/gcig.py).
- EX05 platinum-refractory: a worsening from a line's first platinum dose to 28 days after its
  last, or a recurrence less than `pfi_days` after the last platinum dose.
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
class PlatinumLine:
    """Platinum doses of one line of therapy (for the 'progression during platinum' test)."""

    doses: tuple[Dated, ...]


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
    platinum_lines: tuple[PlatinumLine, ...] = ()
    worsenings: tuple[Dated, ...] = ()  # disease status worsened, tumour assessment PD
    last_assessment_after_first_cycle: tuple[str, str] | None = None  # (response, source id)
    gcig: GcigResponse | None = None
    age_at_consent: int | None = None
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
    """Platinum-free interval of at least 6 months (pfi_days)."""
    if d.pfi_days is None or d.last_platinum is None or d.recurrence is None:
        return Criterion("IN02", "unknown", None)
    evidence = (d.last_platinum.source_id, d.recurrence.source_id)
    return Criterion("IN02", _status(d.pfi_days >= pfi_days), f"PFI {d.pfi_days} days", evidence)


def in03(f: ScreeningFacts, d: Derived) -> Criterion:
    """Response to the 3-4 post-recurrence cycles: RECIST, else GCIG CA-125."""
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
    """Age 19 or over at consent."""
    if f.age_at_consent is None:
        return Criterion("IN04", "unknown", None)
    src = (f.subject_source,) if f.subject_source else ()
    return Criterion("IN04", _status(f.age_at_consent >= MIN_AGE), f"age {f.age_at_consent}", src)


def in05(f: ScreeningFacts) -> Criterion:
    """Judged completely resectable by the surgeon."""
    if f.resectability is None:
        return Criterion("IN05", "unknown", None)
    judgement = f.resectability_judgement
    ok = judgement == "complete-resection-feasible"
    return Criterion("IN05", _status(ok), judgement, (f.resectability.source_id,))


def in06(f: ScreeningFacts) -> Criterion:
    """Consent, including data transfer."""
    if f.consent_on is None or f.consent_data_transfer is None:
        return Criterion("IN06", "unknown", None)
    value = "permits data transfer" if f.consent_data_transfer else "no data transfer"
    src = (f.subject_source,) if f.subject_source else ()
    return Criterion("IN06", _status(f.consent_data_transfer), value, src)


def ex01(f: ScreeningFacts, d: Derived) -> Criterion:
    """No recurrence: met when disease-status records exist and show none."""
    if d.recurrence is not None:
        return Criterion("EX01", "not_met", f"recurrence on {d.recurrence.day}",
                         (d.recurrence.source_id,))  # fmt: skip
    if f.has_disease_status_records:
        return Criterion("EX01", "met", "disease-status records show no recurrence")
    return Criterion("EX01", "unknown", "no disease-status records")


def ex02(f: ScreeningFacts) -> Criterion:
    """Non-epithelial or borderline tumour."""
    src = (f.diagnosis_source,) if f.diagnosis_source else ()
    bad = f.histology_class == "non_epithelial" or f.behaviour == "borderline"
    return Criterion("EX02", _status(bad), f"histology {f.histology_code}", src)


def ex03(f: ScreeningFacts) -> Criterion:
    """Second or later recurrence."""
    evidence = tuple(r.source_id for r in f.recurrences)
    n = len(f.recurrences)
    return Criterion("EX03", _status(n >= 2), f"{n} recurrence(s)", evidence)


def ex04(f: ScreeningFacts) -> Criterion:
    """Interfering secondary malignancy."""
    found = f.interfering_malignancy
    return Criterion("EX04", _status(bool(found)), "recorded" if found else "none recorded",
                     tuple(x.source_id for x in found))  # fmt: skip


def ex05(f: ScreeningFacts, d: Derived, pfi_days: int) -> Criterion:
    """Platinum-refractory or -resistant: progression during platinum, or PFI < 6 months."""
    if d.pfi_days is not None and d.pfi_days < pfi_days and d.last_platinum and d.recurrence:
        return Criterion("EX05", "met", f"recurrence {d.pfi_days} days after last platinum",
                         (d.last_platinum.source_id, d.recurrence.source_id))  # fmt: skip
    for line in f.platinum_lines:
        if not line.doses:
            continue
        start = min(x.day for x in line.doses)
        end = max(x.day for x in line.doses) + timedelta(days=REFRACTORY_DAYS_AFTER_LAST_DOSE)
        during = [w for w in f.worsenings if start <= w.day <= end]
        if during:
            return Criterion("EX05", "met", f"progression during platinum on {during[0].day}",
                             (during[0].source_id,))  # fmt: skip
    return Criterion("EX05", "not_met", "platinum-sensitive")


def _judged(f: ScreeningFacts, code: str, judgement: str) -> Criterion:
    src = (f.resectability.source_id,) if f.resectability else ()
    return Criterion(code, _status(f.resectability_judgement == judgement),
                     f.resectability_judgement, src)  # fmt: skip


def ex08(f: ScreeningFacts) -> Criterion:
    """Comorbidity precluding surgery."""
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
    """(eligible yes/no/unknown, failed criteria, unknown criteria), as issue 5 defines it."""
    failed = [
        c.code for c in criteria
        if (c.code.startswith("IN") and c.status == "not_met")
        or (c.code.startswith("EX") and c.status == "met")
    ]  # fmt: skip
    unknown = [c.code for c in criteria if c.status == "unknown"]
    if failed:
        return "no", failed, unknown
    return ("unknown" if unknown else "yes"), failed, unknown
