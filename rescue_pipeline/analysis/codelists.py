"""The codelists of the exported variables: CDISC Controlled Terminology where CDISC has the
codelist (with NCI concept codes), sponsor-defined otherwise.

The values are taken from the code that writes them (the rules' constants, the arm texts, the
criteria), so a new value cannot be written without appearing here; a test checks every value
of the demo's datasets against its codelist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rescue_pipeline.rules import eligibility as elig
from rescue_pipeline.rules import treatment, tte

# The CDISC Controlled Terminology package the NCI codes below are quoted from. These codelists
# (NY, SEX, AGEU, RACE, ARMNULRS, UNIT) have kept their codes for many releases.
CT_STANDARD = {"name": "CDISC/NCI", "publishing_set": "SDTM", "version": "2024-03-29"}

ARM_TEXT = {
    "A": "Secondary cytoreductive surgery + chemotherapy",
    "B": "Chemotherapy alone",
}

# PARAM of ADELIG: the protocol's criteria in a few words, keyed by elig.CRITERIA.
CRITERION_TEXT: dict[str, str] = {
    "IN01": "First recurrence of invasive epithelial ovarian/tubal/peritoneal cancer",
    "IN02": "Platinum-free interval >= 6 months",
    "IN03": "Response to post-recurrence platinum chemotherapy",
    "IN04": "Age >= 19 years at consent",
    "IN05": "Judged completely resectable",
    "IN06": "Consent including data transfer",
    "EX01": "No recurrence",
    "EX02": "Non-epithelial or borderline tumour",
    "EX03": "Second or later recurrence",
    "EX04": "Interfering secondary malignancy",
    "EX05": "Platinum-refractory or recurrence < 6 months after platinum",
    "EX06": "Palliative surgery only",
    "EX07": "Unresectable metastasis",
    "EX08": "Comorbidity precluding surgery",
}


@dataclass(frozen=True)
class Term:
    value: str
    decode: str | None = None
    nci: str | None = None  # NCI concept code of the term (CDISC CT only)
    extended: bool = False  # a sponsor's value added to a CDISC codelist


@dataclass(frozen=True)
class Codelist:
    oid: str
    name: str
    data_type: Literal["text", "integer"]
    terms: tuple[Term, ...]
    nci: str | None = None  # NCI code of the CDISC codelist; None: sponsor-defined

    @property
    def decoded(self) -> bool:
        return any(t.decode for t in self.terms)

    def values(self) -> set[str]:
        return {t.value for t in self.terms}


def _enum(oid: str, name: str, values: tuple[str, ...]) -> Codelist:
    return Codelist(oid, name, "text", tuple(Term(v) for v in values))


_EVENTS = tuple(dict.fromkeys(e.description for p in tte.PARAMETERS for e in p.events))
_CENSORINGS = (
    tte.NEW_THERAPY.description, tte.MISSED.description, tte.NO_EVENT.description,
    tte.NO_EVENT_ALIVE.description, tte.RANDOMISATION,
)  # fmt: skip

CODELISTS: tuple[Codelist, ...] = (
    Codelist("CL.NY", "No Yes Response", "text",
             (Term("N", "No", "C49487"), Term("Y", "Yes", "C49488"),
              Term("U", "Unknown", "C17998")), nci="C66742"),
    Codelist("CL.NY.YN", "No Yes Response (Y, N)", "text",
             (Term("N", "No", "C49487"), Term("Y", "Yes", "C49488")), nci="C66742"),
    Codelist("CL.NY.Y", "No Yes Response (Y)", "text", (Term("Y", "Yes", "C49488"),),
             nci="C66742"),
    Codelist("CL.SEX", "Sex", "text",
             (Term("F", "Female", "C16576"), Term("M", "Male", "C20197"),
              Term("U", "Unknown", "C17998")), nci="C66731"),
    Codelist("CL.AGEU", "Age Unit", "text", (Term("YEARS", "Years", "C29848"),), nci="C66781"),
    Codelist("CL.RACE", "Race", "text",
             (Term("AMERICAN INDIAN OR ALASKA NATIVE", None, "C41259"),
              Term("ASIAN", None, "C41260"), Term("BLACK OR AFRICAN AMERICAN", None, "C16352"),
              Term("NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", None, "C41219"),
              Term("WHITE", None, "C41261"), Term("MULTIPLE", None, None, extended=True),
              Term("NOT REPORTED", None, "C43234"), Term("UNKNOWN", None, "C17998")),
             nci="C74457"),
    Codelist("CL.ARMCD", "Arm Code", "text", tuple(Term(k, v) for k, v in ARM_TEXT.items())),
    _enum("CL.ARM", "Arm", tuple(ARM_TEXT.values())),
    Codelist("CL.ARMNRS", "Arm Null Reason", "text",
             (Term(treatment.SCREEN_FAILURE), Term(treatment.NOT_TREATED)), nci="C142179"),
    _enum("CL.EOSSTT", "End of Study Status", ("COMPLETED", "DISCONTINUED", "ONGOING")),
    Codelist("CL.PARAMCD.TTE", "Time-to-event Parameter Code", "text",
             tuple(Term(p.paramcd, p.param) for p in tte.PARAMETERS)),
    _enum("CL.PARAM.TTE", "Time-to-event Parameter", tuple(p.param for p in tte.PARAMETERS)),
    Codelist("CL.PARAMN.TTE", "Time-to-event Parameter (N)", "integer",
             tuple(Term(str(n), p.paramcd) for n, p in enumerate(tte.PARAMETERS, start=1))),
    Codelist("CL.AVALU", "Unit", "text", (Term("DAYS", None, "C25301"),), nci="C71620"),
    Codelist("CL.CNSR", "Censor", "integer", (Term("0", "Event"), Term("1", "Censored"))),
    _enum("CL.EVNTDESC", "Event Description", _EVENTS),
    _enum("CL.CNSDTDSC", "Censor Date Description", _CENSORINGS),
    Codelist("CL.SRCDOM", "Source Data", "text",
             (Term("ADSL", "Subject-level analysis dataset"), Term("RS", "Disease Response"),
              Term("LB", "Laboratory Test Results"), Term("CM", "Concomitant/Prior Medications"))),
    _enum("CL.SRCVAR", "Source Variable", ("RANDDT", "DTHDT", "RSDTC", "LBDTC", "CMSTDTC")),
    Codelist("CL.RULE", "Censoring Table Row", "integer",
             (Term("2", "New anticancer therapy before the event or with none"),
              Term("3", "Event after two or more missed assessments"),
              Term("4", "Event"), Term("5", "No event in the window"))),
    Codelist("CL.PARAMCD.ELIG", "Eligibility Criterion Code", "text",
             tuple(Term(c, CRITERION_TEXT[c]) for c in elig.CRITERIA)),
    _enum("CL.PARAM.ELIG", "Eligibility Criterion",
          tuple(CRITERION_TEXT[c] for c in elig.CRITERIA)),
    _enum("CL.PARCAT1.ELIG", "Criterion Category", ("INCLUSION", "EXCLUSION")),
    Codelist("CL.ELIGSTAT", "Criterion Status", "text",
             (Term("met", "Met (for an exclusion: it applies)"), Term("not_met", "Not met"),
              Term("unknown", "Not decidable from the data"))),
    _enum("CL.ELIGIBLE", "Overall Eligibility", ("yes", "no", "unknown")),
    _enum("CL.CA125RSP", "GCIG CA-125 Response", ("response", "no_response", "not_evaluable")),
)  # fmt: skip

BY_OID = {c.oid: c for c in CODELISTS}

# Which codelist a variable takes: (dataset, variable) first, then the variable in any dataset.
_OF: dict[tuple[str, str] | str, str] = {
    "RANDFL": "CL.NY.YN", "ITTFL": "CL.NY.YN", "SAFFL": "CL.NY.YN", "ELIGFL": "CL.NY",
    "DTHFL": "CL.NY.Y",
    "SEX": "CL.SEX", "RACE": "CL.RACE", "AGEU": "CL.AGEU", "ARMCD": "CL.ARMCD",
    "ACTARMCD": "CL.ARMCD",
    "ARM": "CL.ARM", "ACTARM": "CL.ARM", "TRT01P": "CL.ARM", "TRT01A": "CL.ARM",
    "ARMNRS": "CL.ARMNRS", "EOSSTT": "CL.EOSSTT",
    ("ADTTE", "PARAMCD"): "CL.PARAMCD.TTE", ("ADTTE", "PARAM"): "CL.PARAM.TTE",
    ("ADTTE", "PARAMN"): "CL.PARAMN.TTE", "AVALU": "CL.AVALU", "CNSR": "CL.CNSR",
    "EVNTDESC": "CL.EVNTDESC", "CNSDTDSC": "CL.CNSDTDSC", ("ADTTE", "SRCDOM"): "CL.SRCDOM",
    ("ADTTE", "SRCVAR"): "CL.SRCVAR", "RULE": "CL.RULE",
    ("ADELIG", "PARAMCD"): "CL.PARAMCD.ELIG", ("ADELIGEV", "PARAMCD"): "CL.PARAMCD.ELIG",
    ("ADELIG", "PARAM"): "CL.PARAM.ELIG", ("ADELIG", "PARCAT1"): "CL.PARCAT1.ELIG",
    ("ADELIG", "AVALC"): "CL.ELIGSTAT", "ELIGIBLE": "CL.ELIGIBLE", "CA125RSP": "CL.CA125RSP",
}  # fmt: skip


def codelist_for(dataset: str, variable: str) -> Codelist | None:
    """The codelist a dataset's variable takes its values from, if any."""
    oid = _OF.get((dataset, variable)) or _OF.get(variable)
    return BY_OID[oid] if oid else None
