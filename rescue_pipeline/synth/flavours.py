"""Site flavours: how each kind of site codes, times and packages the same clinical facts.

Flavour a (site-a, d, g ...): SNOMED / ICD-O-3, LOINC CA-125 in U/mL, RxNorm concepts inline,
RECIST with NCIt values, mCODE STU4 disease status, Europe/Paris offsets.
Flavour b: ICD-10-CM, CA-125 in kU/L under a local code (sometimes only the local code),
Medication resources by reference, PARP maintenance as MedicationRequest, RECIST under a local
code with text values, mCODE STU3 disease status, UTC `Z` times.
Flavour c: ICD-10, CA-125 in U/L, effectivePeriod sometimes, response only as imaging disease
status, local procedure codes, PARP maintenance as MedicationStatement, US Eastern offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RESCUE = "https://rescue-trial.example.org/fhir/CodeSystem/rescue-assessment"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
UCUM = "http://unitsofmeasure.org"

FLAVOURS: tuple[str, ...] = ("a", "b", "c")
TIMEZONES = {"a": "Europe/Paris", "b": "UTC", "c": "America/New_York"}
CA125_UNITS = {"a": ("U/mL", 1), "b": ("kU/L", 1), "c": ("U/L", 1000)}


@dataclass(frozen=True)
class Site:
    """One synthetic site: its id, letter, flavour and base URL for local code systems."""

    index: int
    id: str
    code: str
    flavour: str

    @property
    def local(self) -> str:
        """Prefix of this site's own code systems."""
        return f"https://{self.id}.example.org/fhir/CodeSystem"

    @property
    def name(self) -> str:
        return f"Site {self.code} (synthetic)"


def make_site(index: int) -> Site:
    """Site `index` (0-based): site-a / A / flavour a, site-b / B / flavour b, ..."""
    letter = chr(ord("a") + index)
    return Site(index, f"site-{letter}", letter.upper(), FLAVOURS[index % len(FLAVOURS)])


def _last_sunday(year: int, month: int) -> date:
    day = date(year, month + 1, 1) - timedelta(days=1) if month < 12 else date(year, 12, 31)
    return day - timedelta(days=(day.weekday() + 1) % 7)


def _nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def utc_offset(flavour: str, day: date) -> str:
    """The offset a site's clock shows on `day` (daytime; DST rules of the EU and the US)."""
    if flavour == "a":
        summer = _last_sunday(day.year, 3) <= day < _last_sunday(day.year, 10)
        return "+02:00" if summer else "+01:00"
    if flavour == "c":
        summer = _nth_sunday(day.year, 3, 2) <= day < _nth_sunday(day.year, 11, 1)
        return "-04:00" if summer else "-05:00"
    return "Z"


def local_datetime(flavour: str, day: date, minute_of_day: int) -> str:
    """A daytime local timestamp, so the local date and the UTC date always agree."""
    hour, minute = divmod(minute_of_day, 60)
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00{utc_offset(flavour, day)}"


def concept_map(site: Site) -> list[dict[str, str]]:
    """The site's local codes mapped to standard ones (goes into sites.yaml)."""
    if site.flavour == "b":
        return [
            {
                "system": f"{site.local}/lab",
                "code": "CA125",
                "target_system": LOINC,
                "target_code": "10334-1",
                "display": "CA-125 (serum)",
            },
            {
                "system": f"{site.local}/imaging",
                "code": "RECIST-OR",
                "target_system": LOINC,
                "target_code": "21976-6",
                "display": "RECIST 1.1 overall response",
            },
            {
                "system": f"{site.local}/diagnosis",
                "code": "REZIDIV",
                "target_system": SNOMED,
                "target_code": "128462008",
                "display": "Secondary malignant neoplastic disease",
            },
        ]
    if site.flavour == "c":
        return [
            {
                "system": f"{site.local}/procedure",
                "code": code,
                "target_system": RESCUE,
                "target_code": f"{kind}-cytoreductive-surgery",
                "display": f"{kind.capitalize()} cytoreductive surgery",
            }
            for kind, code in (
                ("primary", "CRS-1"),
                ("interval", "CRS-IDS"),
                ("secondary", "CRS-2"),
            )
        ]
    return []


LOCAL_PROCEDURE_CODES = {"primary": "CRS-1", "interval": "CRS-IDS", "secondary": "CRS-2"}
