"""Export metadata: which datasets and variables are exported, and define.json describing them.

In the spirit of CDISC Define-XML: every exported variable has a name, label, type, length,
format, origin and derivation. The metadata is built from the data dictionary
(rescue_pipeline.warehouse.analysis_tables) so that a column's comment is its label and a new
column cannot be exported without a name and label that fit SAS transport v5 (checked in
exports.py). The derivation texts come from the rules' own docstrings, so the define file says
what the code does rather than what someone remembered it did.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Date, Double, Float, Integer, Table

from rescue_pipeline.rules import eligibility as elig
from rescue_pipeline.rules import tte
from rescue_pipeline.warehouse import analysis_tables as at

Kind = Literal["text", "integer", "float", "date"]
Origin = Literal["Derived", "Assigned"]

MAX_LABEL = 40
SAS_DATE_FORMAT = "DATE9."

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

# Labels where the comment, shortened by rule (see short_label), would lose its meaning.
LABELS: dict[str, str] = {
    "AVALC": "Status (exclusion met = it applies)",
    "FAILCRIT": "Criteria making the subject ineligible",
    "PFIDAYS": "Platinum-free interval (days)",
    "PRPLCYCN": "Platinum cycles after the recurrence",
    "ELIGFL": "Eligible per derived criteria (Y/N/U)",
    # ADSL's standard variables carry the ADaMIG labels.
    "SUBJID": "Subject Identifier for the Study",
    "SEX": "Sex",
    "ARMCD": "Planned Arm Code",
    "ARM": "Description of Planned Arm",
    "ARMNRS": "Reason Arm and/or Actual Arm is Null",
    "DTHFL": "Subject Death Flag",
    "DTHDT": "Date of Death",
}

# Labels of one table's column only (the same name means something else in another dataset).
TABLE_LABELS: dict[tuple[str, str], str] = {
    ("eligibility", "PARAMCD"): "Criterion code (IN01-IN06, EX01-EX08)",
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

# EX06/EX07 share one function (elig._judged), which has no per-criterion docstring.
_JUDGED = {
    "EX06": "Met when the surgeon's resectability judgement is 'palliative-only'.",
    "EX07": "Met when the surgeon's resectability judgement is 'unresectable-metastasis'.",
}

METHODS: dict[str, tuple[str, Any]] = {
    "MT.TTE": ("Time-to-event derivation and censoring rules (rescue_pipeline.rules.tte)", tte),
    "MT.ELIG": ("Eligibility criteria (rescue_pipeline.rules.eligibility)", elig),
    "MT.ELIGSUM": ("Overall eligibility (rescue_pipeline.rules.eligibility.summary)", elig.summary),
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
    method: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str
    structure: str
    keys: tuple[str, ...]
    source: str
    from_sql: str  # FROM ... [WHERE ...] of the dataset's query
    variables: tuple[Variable, ...]

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


def _column_vars(
    table: Table, *, skip: Sequence[str] = (), method: str | None = None
) -> list[Variable]:
    """One variable per column of an analysis table, named, labelled and typed from it."""
    out = []
    shared = {c.name: str(c.comment) for c in at.adsl.columns}  # same label in every dataset
    for column in table.columns:
        if column.name in skip:
            continue
        name = SHORT_NAMES.get(column.name, column.name.upper())
        comment = shared.get(name, str(column.comment or ""))
        label = TABLE_LABELS.get((table.name, name)) or LABELS.get(name) or short_label(comment)
        origin: Origin = "Assigned" if name in ("STUDYID", "AVALU", "AGEU", "PARAM") else "Derived"
        out.append(
            Variable(name, label, _kind(column.type), origin, comment, f'"{column.name}"', method)
        )
    return out


def _study_var() -> Variable:
    label = short_label(str(at.adsl.c.STUDYID.comment))
    return Variable("STUDYID", label, "text", "Assigned", "Study identifier of the configuration.",
                    "$study_id")  # fmt: skip


def dataset_specs() -> tuple[DatasetSpec, ...]:
    """ADSL, ADTTE, ADELIG (+ ADELIGEV evidence, ADELIGSM summary), in that order."""
    adsl = DatasetSpec(
        "ADSL", "Subject-Level Analysis Dataset", "One record per subject", ("USUBJID",),
        "analysis.adsl", "FROM analysis.adsl", tuple(_column_vars(at.adsl)),
    )  # fmt: skip
    tte_vars = _column_vars(at.adtte, method="MT.TTE")
    adtte = DatasetSpec(
        "ADTTE", "Time-to-Event Analysis Dataset", "One record per subject per parameter",
        ("USUBJID", "PARAMCD"), "analysis.adtte", "FROM analysis.adtte", tuple(tte_vars),
    )  # fmt: skip
    elig_cols = _column_vars(at.eligibility, skip=("usubjid", "site_id", "evidence", "criterion",
                                                   "status", "value"))  # fmt: skip
    by_name = {v.name: v for v in _column_vars(at.eligibility, skip=("evidence",))}
    adelig_vars = [
        _study_var(), by_name["USUBJID"], by_name["SITEID"],
        Variable("PARAMN", "Criterion number (protocol order)", "integer", "Assigned",
                 "Position of the criterion in the protocol (IN01 = 1 ... EX08 = 14).",
                 "c.paramn"),
        by_name["PARAMCD"],
        Variable("PARAM", "Criterion", "text", "Assigned",
                 "Short text of the protocol criterion (see value_level).", "c.param"),
        Variable("PARCAT1", "Criterion category", "text", "Assigned",
                 "INCLUSION for IN01-IN06, EXCLUSION for EX01-EX08.", "c.parcat1"),
        Variable(by_name["AVALC"].name, by_name["AVALC"].label, "text", "Derived",
                 by_name["AVALC"].derivation, by_name["AVALC"].sql, "MT.ELIG"),
        Variable(by_name["CRITVAL"].name, by_name["CRITVAL"].label, "text", "Derived",
                 by_name["CRITVAL"].derivation, by_name["CRITVAL"].sql, "MT.ELIG"),
        *elig_cols,  # columns the table may grow
    ]  # fmt: skip
    adelig = DatasetSpec(
        "ADELIG", "Eligibility Criteria Analysis Dataset",
        "One record per subject per criterion", ("USUBJID", "PARAMN"), "analysis.eligibility",
        "FROM analysis.eligibility e LEFT JOIN export_criteria c ON c.paramcd = e.criterion",
        tuple(adelig_vars),
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
            Variable("PARAMN", "Criterion number (protocol order)", "integer", "Assigned",
                     "Position of the criterion in the protocol.", "paramn"),
            by_name["PARAMCD"],
            Variable("SRCSEQ", "Position in the criterion's evidence", "integer", "Derived",
                     "Position of the id in analysis.eligibility.evidence (1 = first).",
                     "generate_subscripts(ids, 1)"),
            Variable("SRCID", "Source resource id", "text", "Derived",
                     "One id of analysis.eligibility.evidence (source resource ids, split at "
                     "commas, so that no value is cut to fit SAS transport).", "trim(unnest(ids))"),
        ),
    )  # fmt: skip
    columns = sorted(
        _column_vars(at.eligibility_summary), key=lambda v: v.name not in ("USUBJID", "SITEID")
    )  # identifiers first
    summary_vars = [_study_var()] + [
        v if v.name in ("USUBJID", "SITEID") else
        Variable(v.name, v.label, v.kind, v.origin, v.derivation, v.sql, "MT.ELIGSUM")
        for v in columns
    ]  # fmt: skip
    summary = DatasetSpec(
        "ADELIGSM", "Eligibility Summary Analysis Dataset", "One record per subject",
        ("USUBJID",), "analysis.eligibility_summary", "FROM analysis.eligibility_summary",
        tuple(summary_vars),
    )  # fmt: skip
    return adsl, adtte, adelig, evidence, summary


def criteria_rows() -> dict[str, list[Any]]:
    """The export_criteria lookup (PARAMCD -> PARAMN, PARAM, PARCAT1) in protocol order."""
    codes = list(elig.CRITERIA)
    return {
        "paramcd": codes,
        "paramn": list(range(1, len(codes) + 1)),
        "param": [CRITERION_TEXT[c] for c in codes],
        "parcat1": ["INCLUSION" if c.startswith("IN") else "EXCLUSION" for c in codes],
    }


def _criterion_derivation(code: str) -> str:
    function = getattr(elig, code.lower(), None)
    return _JUDGED.get(code) or (inspect.getdoc(function) or "" if function else "")


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
    """define.json content: study, datasets (label, structure, keys, file), variables, methods.

    `lengths` gives, per dataset and text variable, the longest value in bytes (the SAS length);
    numeric and date variables are 8 bytes.
    """
    datasets = []
    for spec in specs:
        variables = []
        for order, v in enumerate(spec.variables, start=1):
            variables.append({
                "order": order, "name": v.name, "label": v.label,
                "type": v.kind,
                "sas_type": "Char" if v.kind == "text" else "Num",
                "length": lengths[spec.name].get(v.name, 1) if v.kind == "text" else 8,
                "format": SAS_DATE_FORMAT if v.kind == "date" else None,
                "origin": v.origin, "derivation": v.derivation, "method": v.method,
                "key_sequence": spec.keys.index(v.name) + 1 if v.name in spec.keys else None,
            })  # fmt: skip
        entry: dict[str, Any] = {
            "name": spec.name, "label": spec.label, "structure": spec.structure,
            "keys": list(spec.keys), "source": spec.source, **files.get(spec.name, {}),
            "variables": variables,
        }  # fmt: skip
        if spec.name in ("ADELIG", "ADELIGEV"):
            entry["value_level"] = [
                {"variable": "PARAMCD", "where": f"PARAMCD = '{code}'",
                 "param": CRITERION_TEXT[code], "derivation": _criterion_derivation(code),
                 "method": "MT.ELIG"}
                for code in elig.CRITERIA
            ]  # fmt: skip
        datasets.append(entry)
    return {
        "define_version": "rescue-define/1 (in the spirit of CDISC Define-XML 2.1)",
        "study": {"studyid": study_id, "protocol": nct_id},
        "format": fmt,
        "dates": {
            "xpt": "SAS dates (days since 1960-01-01) with format DATE9.",
            "csv": "ISO 8601 (YYYY-MM-DD)",
            "parquet": "date32",
        }[fmt],
        "missing_text": "blank (SAS has no missing character value)" if fmt == "xpt" else "null",
        "derivation_run": dict(provenance) if provenance else None,
        "datasets": datasets,
        "methods": [
            {"id": key, "name": name, "description": inspect.getdoc(obj) or ""}
            for key, (name, obj) in METHODS.items()
        ],
    }
