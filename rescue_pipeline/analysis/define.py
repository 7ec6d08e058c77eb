"""Export metadata: which datasets and variables are exported, and how each is derived.

One source for define.xml (Define-XML 2.1), its HTML rendering and define.json: every exported
variable has a name, label, type, length, format, origin (Derived, Assigned or Predecessor), a
derivation that says how it is computed, and its codelist. The variables come from the data
dictionary (rescue_pipeline.warehouse.analysis_tables), so a new column cannot be exported
without a name and label that fit SAS transport v5 (checked in exports.py); the derivations of
the criteria and the time-to-event parameters come from the rules' own code, so the define says
what the code does rather than what someone remembered it did.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import Date, Double, Float, Integer, Table

from rescue_pipeline.analysis.codelists import CODELISTS, CRITERION_TEXT, Codelist, codelist_for
from rescue_pipeline.rules import (
    dates,
    gcig,
    partial_dates,
    recurrence,
    regimens,
    screening,
    treatment,
    tte,
)
from rescue_pipeline.rules import eligibility as elig
from rescue_pipeline.warehouse import analysis_tables as at

Kind = Literal["text", "integer", "float", "date"]
Origin = Literal["Derived", "Assigned", "Predecessor"]

MAX_LABEL = 40
SAS_DATE_FORMAT = "DATE9."
ADAMIG = {"name": "ADaMIG", "version": "1.3"}

# Short ADaM names for the eligibility tables' long column names (XPT v5: <= 8 characters).
SHORT_NAMES: dict[str, str] = {
    "usubjid": "USUBJID",
    "site_id": "SITEID",
    "criterion": "PARAMCD",
    "status": "AVALC",
    "value": "CRITVAL",
    "eligible": "ELIGIBLE",
    "failed_criteria": "FAILCRIT",
    "unknown_criteria": "UNKCRIT",
    "pfi_days": "PFIDAYS",
    "post_recurrence_cycles": "PRPLCYCN",
    "ca125_response": "CA125RSP",
    "ca125_response_date": "CA125RDT",
}

# Labels where the comment, shortened by rule (see short_label), would lose its meaning, and the
# ADaMIG labels of the standard variables.
LABELS: dict[str, str] = {
    "AVALC": "Analysis Value (C)",
    "PARCAT1": "Parameter Category 1",
    "FAILCRIT": "Criteria making the subject ineligible",
    "PFIDAYS": "Platinum-free interval (days)",
    "PRPLCYCN": "Platinum cycles after the recurrence",
    "ELIGFL": "Eligible per derived criteria (Y/N/U)",
    "ELIGIBLE": "Overall eligibility",
    "STUDYID": "Study Identifier",
    "USUBJID": "Unique Subject Identifier",
    "SUBJID": "Subject Identifier for the Study",
    "SITEID": "Study Site Identifier",
    "AGE": "Age",
    "AGEU": "Age Units",
    "SEX": "Sex",
    "RACE": "Race",
    "ARMCD": "Planned Arm Code",
    "ARM": "Description of Planned Arm",
    "ACTARMCD": "Actual Arm Code",
    "ACTARM": "Description of Actual Arm",
    "ARMNRS": "Reason Arm and/or Actual Arm is Null",
    "TRT01P": "Planned Treatment for Period 01",
    "TRT01A": "Actual Treatment for Period 01",
    "RANDDT": "Date of Randomization",
    "RANDFL": "Randomized Population Flag",
    "ITTFL": "Intent-To-Treat Population Flag",
    "SAFFL": "Safety Population Flag",
    "DTHFL": "Subject Death Flag",
    "DTHDT": "Date of Death",
    "EOSSTT": "End of Study Status",
    "PARAM": "Parameter",
    "PARAMCD": "Parameter Code",
    "PARAMN": "Parameter (N)",
    "STARTDT": "Time-to-Event Origin Date for Subject",
    "ADT": "Analysis Date",
    "AVAL": "Analysis Value",
    "AVALU": "Analysis Value Unit",
    "CNSR": "Censor",
    "EVNTDESC": "Event or Censoring Description",
    "CNSDTDSC": "Censor Date Description",
    "SRCDOM": "Source Data",
    "SRCVAR": "Source Variable",
    "SRCSEQ": "Source Sequence Number",
}

# Labels of one table's column only (the same name means something else in another dataset).
TABLE_LABELS: dict[tuple[str, str], str] = {}

# How each derived variable is computed, where its column comment says less than that. Keyed by
# (dataset, variable) or by the variable in every dataset; the time-to-event and eligibility
# variables also get a method per parameter or criterion (value-level metadata).
DERIVATIONS: dict[tuple[str, str] | str, str] = {
    "USUBJID": "'RESCUE-' + the site code + '-' + the number of the ResearchSubject identifier "
    "(RSC-<SITE>-NNNN) when the site sends one; otherwise 'RESCUE-<site>-X' + a keyed HMAC of "
    "the site's ResearchSubject id, so that no hospital identifier is exported.",
    "SUBJID": "USUBJID without its leading 'RESCUE-'.",
    "RACE": "From the US Core race extension of the Patient (ombCategory codes, CDC race and "
    "ethnicity code system): 1002-5 AMERICAN INDIAN OR ALASKA NATIVE, 2028-9 ASIAN, 2054-5 "
    "BLACK OR AFRICAN AMERICAN, 2076-8 NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER, 2106-3 "
    "WHITE; two or more categories MULTIPLE; the null flavours UNK UNKNOWN and ASKU NOT "
    "REPORTED; null when the site sends no race.",
    "STUDYID": "The study_id of the configuration (sites.yaml).",
    "AGEU": "YEARS when AGE is known.",
    "AVALU": "DAYS.",
    "SITEID": "The id of the site (sites.yaml) whose server or files sent the subject.",
    "AGE": "Completed years from Patient.birthDate to the consent date (Consent.dateTime), "
    "else to the randomisation date; null when a partial birth date allows two ages.",
    "ARMCD": "First letter (A or B) of ResearchSubject.assignedArm when the subject has a "
    "randomisation date (period.start); null for a subject never randomised.",
    "ARM": "ARMCD decoded: A = 'Secondary cytoreductive surgery + chemotherapy', "
    "B = 'Chemotherapy alone'.",
    "ACTARM": "ACTARMCD decoded: A = 'Secondary cytoreductive surgery + chemotherapy', "
    "B = 'Chemotherapy alone'.",
    "TRT01P": "Equal to ARM: the trial has one treatment period.",
    "TRT01A": "Equal to ACTARM: the trial has one treatment period.",
    "RANDDT": "ResearchSubject.period.start, as the local date sent, of a subject with an "
    "assigned arm.",
    "RANDFL": "Y when ARMCD and RANDDT are both present, else N.",
    "ITTFL": "Y for every randomised subject (RANDFL = Y), analysed in the arm assigned; else N.",
    "SAFFL": "Y when ACTARMCD is present (randomised and treated), else N.",
    "ELIGFL": "Y when the overall eligibility (ADELIGSM.ELIGIBLE) is yes, N when no, "
    "U when unknown.",
    "DTHFL": "Y when Patient.deceasedDateTime is sent, else null.",
    "DTHDT": "Patient.deceasedDateTime as the local date sent.",
    ("ADTTE", "ADT"): "The date of the censoring-table row that decided (rule book §7; RULE): "
    "the event's date for an event; otherwise the last adequate assessment (the last date "
    "known alive for OS and TFST) before the censoring reason, else the randomisation date. "
    "See the value-level metadata for each parameter.",
    ("ADTTE", "STARTDT"): "ADSL.RANDDT: the time-to-event origin is randomisation.",
    ("ADTTE", "AVAL"): "ADT - STARTDT + 1 (days).",
    ("ADTTE", "CNSR"): "0 when the row that decided is the event (RULE 4); 1 for a censoring "
    "(RULE 2, 3 or 5).",
    ("ADTTE", "EVNTDESC"): "For an event, its source: documented progression, death or the "
    "first subsequent anticancer therapy; null for a censoring.",
    ("ADTTE", "CNSDTDSC"): "For a censoring, what ADT is: the last adequate assessment before "
    "new anticancer therapy or before two or more missed assessments, the last adequate "
    "assessment, the last date known alive, or randomisation when there is no adequate "
    "assessment; null for an event.",
    ("ADTTE", "SRCDOM"): "ADSL when ADT is the randomisation or the death date; otherwise the "
    "SDTM domain of the dated record: RS (tumour assessment or disease status), LB (CA-125), "
    "CM (drug).",
    ("ADTTE", "SRCVAR"): "The variable of SRCDOM that holds ADT: RANDDT, DTHDT, RSDTC, LBDTC or "
    "CMSTDTC.",
    ("ADTTE", "SRCSEQ"): "Always null: FHIR records carry no SDTM sequence number; SRCID "
    "identifies the record.",
    ("ADTTE", "SRCID"): "FHIR id (within its site) of the resource whose date is ADT.",
    ("ADTTE", "RULE"): "Row of the rule book's censoring table (§7) that decided: 2 new "
    "anticancer therapy, 3 two or more missed assessments, 4 the event, 5 no event.",
    ("ADTTE", "SRCFTYP"): "FHIR resource type of the record whose date is ADT "
    "(ResearchSubject, Patient, Observation, MedicationAdministration, ...).",
    ("ADTTE", "SRCFELM"): "The element of that resource holding the date: period.start "
    "(ResearchSubject), deceasedDateTime (Patient), effective[x] (an Observation, dateTime or "
    "the start of a Period), and for a drug the element that dated it (effectiveDateTime, "
    "effectivePeriod.start, dosageInstruction.timing.repeat.boundsPeriod.start, authoredOn).",
    ("ADELIG", "AVALC"): "The criterion's rule applied to the subject's records in her screening "
    "window (rule book §2-6): met, not_met or unknown. See the value-level metadata for each "
    "criterion.",
    ("ADELIG", "CRITVAL"): "The fact the criterion was decided on, as text (for example the "
    "platinum-free interval in days, the histology code, the response recorded).",
    ("ADELIGEV", "SRCSEQ"): "Position of the id in the criterion's evidence list (1 = first).",
    ("ADELIGEV", "SRCID"): "One FHIR id of the criterion's evidence (the list split at commas, "
    "so that no value is cut to fit SAS transport).",
    "ELIGIBLE": "no when any inclusion is not_met or any exclusion met; otherwise unknown when "
    "any criterion is unknown; otherwise yes (rule book §6).",
    "FAILCRIT": "The criteria, comma-separated, that make the subject ineligible (inclusions "
    "not_met, exclusions met).",
    "UNKCRIT": "The criteria, comma-separated, that could not be decided (unknown).",
    "PFIDAYS": "Days from the last platinum dose (carboplatin, cisplatin) of the line before the "
    "screened recurrence to that recurrence (rule book §4).",
    "PRPLCYCN": "Platinum cycles given after the screened recurrence up to the end of the "
    "screening window: a dose at least 14 days after the previous cycle's start begins a cycle.",
    "CA125RSP": "GCIG CA-125 response to the post-recurrence chemotherapy (rule book §5): a fall "
    ">= 50 % from a baseline >= 70 U/mL, confirmed at least 28 days later.",
    "CA125RDT": "Date of the first sample showing the 50 % fall, for a response.",
}

# Exported only when a site sends them: a column of nulls would claim data we never had.
OPTIONAL = frozenset({"RACE"})
# Variables copied from ADSL into the other datasets (Define-XML origin Predecessor).
PREDECESSORS = frozenset({"STUDYID", "USUBJID", "SITEID"})
ASSIGNED = frozenset({"STUDYID", "AVALU", "AGEU", "PARAM", "PARAMCD", "PARAMN", "PARCAT1"})
# Sponsor-defined variables (not in ADaMIG) and why they are there.
SPONSOR_DEFINED: dict[str, str] = {
    "RULE": "Sponsor-defined: the row of the censoring table, for review of each decision.",
    "SRCFTYP": "Sponsor-defined: FHIR provenance of ADT (the resource type), beside the ADaM "
    "SRCDOM/SRCVAR that name an ADaM or SDTM source.",
    "SRCFELM": "Sponsor-defined: FHIR provenance of ADT (the element dated).",
    "SRCID": "Sponsor-defined: FHIR id of the source resource.",
    "CRITVAL": "Sponsor-defined: the fact a criterion was decided on.",
    "AVALC": "In ADELIG: the criterion's status, met / not_met / unknown; for an exclusion, met "
    "means it applies.",
}

# EX06/EX07 share one function (elig._judged), which has no per-criterion docstring.
_JUDGED = {
    "EX06": "Met when the surgeon's resectability judgement is 'palliative-only'.",
    "EX07": "Met when the surgeon's resectability judgement is 'unresectable-metastasis'.",
}

# Never exported, whatever a table grows (docs/warehouse.md: nothing published identifies a person).
DIRECT_IDENTIFIERS = frozenset(
    {"patient_id", "name", "given", "family", "birth_date", "birthdate", "dob", "address",
     "phone", "email", "mrn", "ssn", "telecom", "identifier"}
)  # fmt: skip


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    kind: Kind
    origin: Origin
    derivation: str
    sql: str  # expression in the dataset's SELECT (our constants, never data)
    mandatory: bool = False  # never null
    optional: bool = False  # exported only when some record has a value (RACE: if sites send it)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str
    structure: str
    keys: tuple[str, ...]
    source: str
    from_sql: str  # FROM ... [WHERE ...] of the dataset's query
    variables: tuple[Variable, ...]
    adam_class: str = "ADAM OTHER"
    subclass: str | None = None
    comment: str | None = None

    def select_sql(self) -> str:
        cols = ", ".join(f'{v.sql} AS "{v.name}"' for v in self.variables)
        order = ", ".join(f'"{k}"' for k in self.keys)
        return f"SELECT {cols} {self.from_sql} ORDER BY {order}"


def short_label(comment: str) -> str:
    """A label of <= 40 characters from a column comment: drop the full stop, then a trailing
    parenthesis, then whatever follows the first ': ' or ', '. Longer results are left long so
    that the export's check fails and someone writes a label (LABELS) instead of a cut."""
    label = comment.strip().rstrip(".")
    if len(label) > MAX_LABEL:
        label = re.sub(r"\s*\([^()]*\)$", "", label)
    if len(label) > MAX_LABEL:
        label = re.split(r": |, ", label, maxsplit=1)[0]
    return label


def _kind(type_: Any) -> Kind:
    if isinstance(type_, Date):
        return "date"
    if isinstance(type_, Integer):
        return "integer"
    if isinstance(type_, Double | Float):
        return "float"
    return "text"


def _column_vars(table: Table, *, skip: Sequence[str] = ()) -> list[Variable]:
    """One variable per column of an analysis table, named, labelled and typed from it."""
    out = []
    shared = {c.name: str(c.comment) for c in at.adsl.columns}  # same label in every dataset
    for column in table.columns:
        if column.name in skip:
            continue
        name = SHORT_NAMES.get(column.name, column.name.upper())
        comment = shared.get(name, str(column.comment or ""))
        label = TABLE_LABELS.get((table.name, name)) or LABELS.get(name) or short_label(comment)
        out.append(Variable(name, label, _kind(column.type), "Derived", comment,
                            f'"{column.name}"', mandatory=not column.nullable,
                            optional=name in OPTIONAL))  # fmt: skip
    return out


def _study_var() -> Variable:
    return Variable("STUDYID", LABELS["STUDYID"], "text", "Assigned",
                    "Study identifier of the configuration (sites.yaml study_id).", "$study_id",
                    mandatory=True)  # fmt: skip


def _finish(dataset: str, v: Variable) -> Variable:
    """The variable's origin and derivation for `dataset`: copied from ADSL (Predecessor),
    assigned a constant (Assigned), or derived by the text of DERIVATIONS."""
    if dataset != "ADSL" and v.name in PREDECESSORS:
        return replace(v, origin="Predecessor", derivation=f"ADSL.{v.name}")
    text = DERIVATIONS.get((dataset, v.name)) or DERIVATIONS.get(v.name) or v.derivation
    return replace(v, origin="Assigned" if v.name in ASSIGNED else "Derived", derivation=text)


def _spec(spec: DatasetSpec) -> DatasetSpec:
    return replace(spec, variables=tuple(_finish(spec.name, v) for v in spec.variables))


def dataset_specs() -> tuple[DatasetSpec, ...]:
    """ADSL, ADTTE, ADELIG (+ ADELIGEV evidence, ADELIGSM summary), in that order."""
    adsl = DatasetSpec(
        "ADSL", "Subject-Level Analysis Dataset", "One record per subject", ("USUBJID",),
        "analysis.adsl", "FROM analysis.adsl", tuple(_column_vars(at.adsl)),
        adam_class="SUBJECT LEVEL ANALYSIS DATASET",
    )  # fmt: skip
    adtte = DatasetSpec(
        "ADTTE", "Time-to-Event Analysis Dataset", "One record per subject per parameter",
        ("USUBJID", "PARAMCD"), "analysis.adtte", "FROM analysis.adtte",
        tuple(_column_vars(at.adtte)), adam_class="BASIC DATA STRUCTURE",
        subclass="TIME-TO-EVENT",
        comment="Randomised subjects only; PFS per rule book §7, OS and TFST by the same rules.",
    )  # fmt: skip
    elig_cols = _column_vars(at.eligibility, skip=("usubjid", "site_id", "evidence", "criterion",
                                                   "status", "value"))  # fmt: skip
    by_name = {v.name: v for v in _column_vars(at.eligibility, skip=("evidence",))}
    adelig_vars = [
        _study_var(), by_name["USUBJID"], by_name["SITEID"],
        Variable("PARAMN", LABELS["PARAMN"], "integer", "Assigned",
                 "Position of the criterion in the protocol (IN01 = 1 ... EX08 = 14).",
                 "c.paramn", mandatory=True),
        by_name["PARAMCD"],
        Variable("PARAM", LABELS["PARAM"], "text", "Assigned",
                 "Short text of the protocol criterion.", "c.param", mandatory=True),
        Variable("PARCAT1", LABELS["PARCAT1"], "text", "Assigned",
                 "INCLUSION for IN01-IN06, EXCLUSION for EX01-EX08.", "c.parcat1",
                 mandatory=True),
        by_name["AVALC"], by_name["CRITVAL"],
        *elig_cols,  # columns the table may grow
    ]  # fmt: skip
    adelig = DatasetSpec(
        "ADELIG", "Eligibility Criteria Analysis Dataset",
        "One record per subject per criterion", ("USUBJID", "PARAMN"), "analysis.eligibility",
        "FROM analysis.eligibility e LEFT JOIN export_criteria c ON c.paramcd = e.criterion",
        tuple(adelig_vars), adam_class="BASIC DATA STRUCTURE",
        comment="Every screened subject, each protocol criterion in protocol order.",
    )  # fmt: skip
    evidence = DatasetSpec(
        "ADELIGEV", "Eligibility Evidence (source resources)",
        "One record per subject per criterion per source resource",
        ("USUBJID", "PARAMN", "SRCSEQ"), "analysis.eligibility (evidence)",
        "FROM (SELECT e.*, c.paramn, string_split(e.evidence, ',') AS ids "
        "FROM analysis.eligibility e LEFT JOIN export_criteria c ON c.paramcd = e.criterion "
        "WHERE coalesce(e.evidence, '') <> '')",
        (
            _study_var(), by_name["USUBJID"], by_name["SITEID"],
            Variable("PARAMN", LABELS["PARAMN"], "integer", "Assigned",
                     "Position of the criterion in the protocol.", "paramn", mandatory=True),
            by_name["PARAMCD"],
            Variable("SRCSEQ", "Position in the criterion's evidence", "integer", "Derived",
                     "", "generate_subscripts(ids, 1)", mandatory=True),
            Variable("SRCID", "Source resource id", "text", "Derived", "", "trim(unnest(ids))",
                     mandatory=True),
        ),
        comment="The evidence lists of ADELIG split one source resource id per record, so "
        "that no value is cut to fit SAS transport's 200 bytes.",
    )  # fmt: skip
    columns = sorted(
        _column_vars(at.eligibility_summary), key=lambda v: v.name not in ("USUBJID", "SITEID")
    )  # identifiers first
    summary = DatasetSpec(
        "ADELIGSM", "Eligibility Summary Analysis Dataset", "One record per subject",
        ("USUBJID",), "analysis.eligibility_summary", "FROM analysis.eligibility_summary",
        (_study_var(), *columns),
    )  # fmt: skip
    return tuple(_spec(s) for s in (adsl, adtte, adelig, evidence, summary))


def criteria_rows() -> dict[str, list[Any]]:
    """The export_criteria lookup (PARAMCD -> PARAMN, PARAM, PARCAT1) in protocol order."""
    codes = list(elig.CRITERIA)
    return {
        "paramcd": codes,
        "paramn": list(range(1, len(codes) + 1)),
        "param": [CRITERION_TEXT[c] for c in codes],
        "parcat1": ["INCLUSION" if c.startswith("IN") else "EXCLUSION" for c in codes],
    }


def plain(text: str) -> str:
    """A docstring as a reader's text: Markdown marks (** and `) dropped, lines wrapped for the
    source joined into paragraphs, a list item kept on its own line."""
    text = text.replace("**", "").replace("`", "")
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines: list[str] = []
        for line in block.splitlines():
            stripped = line.strip()
            if lines and not stripped.startswith("- "):
                lines[-1] += " " + stripped
            else:
                lines.append(stripped)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def criterion_derivation(code: str) -> str:
    """How a criterion is decided: its rule's docstring (rule book §2-6)."""
    function = getattr(elig, code.lower(), None)
    return plain(_JUDGED.get(code) or (inspect.getdoc(function) or "" if function else ""))


def parameter_derivation(p: tte.Parameter, settings: Mapping[str, Any]) -> str:
    """How a time-to-event parameter was derived: its declaration in rules.tte with the
    settings of the derivation run (window, GCIG progression, new-therapy censoring)."""
    window = settings.get("pfs_window_days", 730)
    names = [e.description.lower() for e in p.events]
    if tte.PROGRESSION in p.events:
        basis = "RECIST or imaging PD" + (
            ", or GCIG CA-125 progression" if settings.get("pfs_gcig_progression") else ""
        )
        names[p.events.index(tte.PROGRESSION)] += f" ({basis})"
    censor = []
    if p.censor_new_therapy and settings.get("pfs_censor_new_therapy", True):
        censor.append("new anticancer therapy starts before it, or with no event (rule 2)")
    if p.censor_missed_assessments:
        censor.append("it follows two or more missed assessments (rule 3)")
    last = "the last date known alive" if p.censor_at_last_alive else "the last adequate assessment"
    text = (
        f"Event: the earliest {' or '.join(names)} (a death from the randomisation day) inside "
        f"the window of {window} days from randomisation, both ends included, up to the data "
        "cut-off; ADT its date (rule 4). "
    )
    if censor:
        text += ("Censored at the last adequate assessment before the reason when "
                 + " or when ".join(censor) + ". ")  # fmt: skip
    return text + f"No event: censored at {last} in the window, else at randomisation (rule 5)."


def value_level(settings: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Value-level metadata: ADTTE's AVAL per PARAMCD, ADELIG's AVALC per criterion."""
    return {
        "ADTTE": [
            {"variable": "AVAL", "where_variable": "PARAMCD", "value": p.paramcd,
             "label": p.param, "derivation": parameter_derivation(p, settings)}
            for p in tte.PARAMETERS
        ],
        "ADELIG": [
            {"variable": "AVALC", "where_variable": "PARAMCD", "value": code,
             "label": CRITERION_TEXT[code], "derivation": criterion_derivation(code)}
            for code in elig.CRITERIA
        ],
    }  # fmt: skip


def rule_modules() -> list[dict[str, str]]:
    """The rule modules' own account of the rule book (their docstrings cite its sections)."""

    modules = (dates, partial_dates, screening, recurrence, regimens, gcig, elig, tte, treatment)
    return [{"module": m.__name__, "text": plain(inspect.getdoc(m) or "")} for m in modules]


def _codelist(c: Codelist) -> dict[str, Any]:
    terms = [{"value": t.value, "decode": t.decode, "nci": t.nci, "extended": t.extended}
             for t in c.terms]  # fmt: skip
    return {"oid": c.oid, "name": c.name, "type": c.data_type, "nci": c.nci, "terms": terms}


def define_document(
    specs: Sequence[DatasetSpec],
    *,
    study_id: str,
    nct_id: str | None,
    fmt: str,
    lengths: Mapping[str, Mapping[str, int]],
    files: Mapping[str, Mapping[str, Any]],
    provenance: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The export's metadata: study, standards, datasets (class, structure, keys, file),
    variables (origin, derivation, codelist, comment), value-level metadata, codelists and the
    rules. define.json is this document; define.xml and define.html are written from it.

    `lengths` gives, per dataset and variable, the Define-XML length: the longest text value in
    bytes (the SAS length), the most digits of an integer or of a date's SAS day number.
    """
    settings = dict((provenance or {}).get("settings") or {})
    xpt = fmt == "xpt"
    levels = value_level(settings)
    datasets = []
    for spec in specs:
        variables = []
        for order, v in enumerate(spec.variables, start=1):
            codelist = codelist_for(spec.name, v.name)
            variables.append({
                "order": order, "name": v.name, "label": v.label,
                "type": v.kind,
                "sas_type": "Char" if v.kind == "text" else "Num",
                "length": lengths[spec.name].get(v.name, 1),
                "format": SAS_DATE_FORMAT if v.kind == "date" and xpt else None,
                "origin": v.origin, "derivation": v.derivation,
                "mandatory": v.mandatory or v.name in spec.keys,
                "codelist": codelist.oid if codelist else None,
                "comment": SPONSOR_DEFINED.get(v.name),
                "key_sequence": spec.keys.index(v.name) + 1 if v.name in spec.keys else None,
            })  # fmt: skip
        datasets.append({
            "name": spec.name, "label": spec.label, "class": spec.adam_class,
            "subclass": spec.subclass, "structure": spec.structure,
            "keys": list(spec.keys), "source": spec.source, "comment": spec.comment,
            **files.get(spec.name, {}), "variables": variables,
            "value_level": levels.get(spec.name, []),
        })  # fmt: skip
    used = {v["codelist"] for d in datasets for v in d["variables"]}
    return {
        "define_version": "rescue-define/2 (the content of define.xml, Define-XML 2.1)",
        "study": {"studyid": study_id, "protocol": nct_id},
        "standard": ADAMIG,
        "format": fmt,
        "dates": {
            "xpt": "SAS dates (days since 1960-01-01) with format DATE9.",
            "csv": "ISO 8601 (YYYY-MM-DD)",
            "parquet": "date32",
        }[fmt],
        "missing_text": "blank (SAS has no missing character value)" if fmt == "xpt" else "null",
        "derivation_run": dict(provenance) if provenance else None,
        "datasets": datasets,
        "codelists": [_codelist(c) for c in CODELISTS if c.oid in used],
        "rules": rule_modules(),
    }
