"""The latent clinical story of one synthetic patient: what the generator decided happened.

Plain frozen dataclasses, no FHIR. `clinical.py` writes stories, `fhir.py` renders them as a
site would send them, and `truth.py` derives the expected analysis results from the same records,
so the resources and the ground truth can never disagree about the facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

PLATINUM: frozenset[str] = frozenset({"carboplatin", "cisplatin"})
"""Platinum drugs: their last dose before a recurrence starts the platinum-free interval."""

MAINTENANCE: frozenset[str] = frozenset({"olaparib", "niraparib", "rucaparib", "bevacizumab"})
"""Drugs given alone after chemotherapy as maintenance: never a new line of therapy."""

RESPONSES: tuple[str, ...] = ("CR", "PR", "SD", "PD", "NE")


@dataclass(frozen=True, slots=True)
class Dose:
    """One intravenous administration (chemotherapy, bevacizumab, new therapy)."""

    day: date
    drug: str
    line: int
    phase: str  # "chemo" | "maintenance" | "new_therapy"


@dataclass(frozen=True, slots=True)
class OralCourse:
    """Oral maintenance (PARP inhibitor) sent as a period, not as doses."""

    drug: str
    start: date
    end: date | None  # None: still taking it at the data cut-off
    line: int


@dataclass(frozen=True, slots=True)
class Lab:
    """One CA-125 result; `tenths` of U/mL keep every unit conversion exact."""

    day: date
    tenths: int
    below_lod: bool = False
    after_randomisation: bool = False


@dataclass(frozen=True, slots=True)
class Assessment:
    """A tumour response assessment (RECIST 1.1 overall response, or imaging disease status)."""

    day: date
    response: str  # CR | PR | SD | PD | NE
    after_randomisation: bool = False


@dataclass(frozen=True, slots=True)
class DiseaseStatus:
    """A clinical disease-status record (mCODE CancerDiseaseStatus) that is not an assessment."""

    day: date
    value: str  # ned | worsened


@dataclass(frozen=True, slots=True)
class Surgery:
    """A cytoreductive surgery and the residual disease recorded after it."""

    day: date
    kind: str  # primary | interval | secondary
    residual: str  # R0 | R1 | R2


@dataclass(frozen=True, slots=True)
class Finding:
    """A screening finding: resectability judgement, interfering malignancy or comorbidity."""

    day: date
    kind: str  # resectability | interfering-malignancy | comorbidity-precluding-surgery
    value: str | bool


@dataclass(frozen=True, slots=True)
class Story:
    """Everything the generator decided for one patient, in records the sites will send."""

    index: int
    scenario: str
    outcome: str | None
    birth: date
    diagnosis: date
    primary_site: str  # ovary | tube | peritoneum (IN01 sites) | adnexa (not one)
    histology: str  # ICD-O-3 morphology/behaviour, e.g. "8461/3"
    stage: str  # FIGO, e.g. "IIIC"
    metastasis_at_diagnosis: str | None  # body site of a SecondaryCancerCondition at diagnosis
    doses: tuple[Dose, ...]
    oral: tuple[OralCourse, ...]
    surgeries: tuple[Surgery, ...]
    labs: tuple[Lab, ...]
    statuses: tuple[DiseaseStatus, ...]
    assessments: tuple[Assessment, ...]
    recurrence_conditions: tuple[date, ...]  # SecondaryCancerCondition onsets after treatment
    findings: tuple[Finding, ...]
    consent: date | None
    consent_disclose: bool
    trial_subject: bool
    has_identifier: bool
    randomised: date | None
    arm: str | None
    subject_status: str  # R4 ResearchSubject.status
    death: date | None
    last_contact: date
    notes: tuple[str, ...] = field(default=())
    birth_precision: str = "day"  # day | month | year: how much of birthDate the site sends
    consent_sent: bool = True  # False: the site sends no Consent resource for her
    screening_end: date | None = None  # ResearchSubject.period.end sent for a screen failure
    study_end: date | None = None  # period.end sent for a randomised subject who left (off-study)
    corrected_assessment: bool = False  # the screening response was corrected in a new version
    deleted_record: bool = False  # an erroneous PD the site sent, then deleted
    partial_assessment: bool = False  # the screening response is sent dated to its month only
    partial_onset: date | None = None  # this secondary cancer's onset is sent as YYYY-MM
