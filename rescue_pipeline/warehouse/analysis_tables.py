"""Analysis tables (docs/warehouse.md, `analysis` schema): eligibility, ADSL and ADTTE.

Same MetaData as tables.py (one data dictionary). ADaM variable names are upper case, as
analysts and SAS programs expect; nothing here identifies a person.
"""

from __future__ import annotations

from sqlalchemy import JSON, Date, Double, Integer, String, Table

from rescue_pipeline.warehouse.tables import _c, metadata

eligibility = Table(
    "eligibility",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("criterion", String, "IN01..IN06, EX01..EX08 (protocol order).", nullable=False),
    _c(
        "status",
        String,
        "met / not_met / unknown (for an exclusion, met = it applies).",
        nullable=False,
    ),
    _c("value", String, "What the criterion was decided on."),
    _c("evidence", String, "Source resource ids, comma-separated."),
    _c("site_id", String, "Site.", nullable=False),
    schema="analysis",
    comment="One row per subject and eligibility criterion (rescue_pipeline.rules.eligibility).",
)

eligibility_summary = Table(
    "eligibility_summary",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("eligible", String, "yes / no / unknown.", nullable=False),
    _c("failed_criteria", String, "Criteria that make the subject ineligible, comma-separated."),
    _c("unknown_criteria", String, "Criteria that could not be decided, comma-separated."),
    _c("pfi_days", Integer, "Platinum-free interval before the screened recurrence (days)."),
    _c("post_recurrence_cycles", Integer, "Platinum cycles after the screened recurrence."),
    _c("ca125_response", String, "GCIG CA-125 response: response, no_response, not_evaluable."),
    _c("ca125_response_date", Date, "Date of the first 50% fall, for a response."),
    _c("site_id", String, "Site.", nullable=False),
    schema="analysis",
    comment="One row per subject: overall eligibility with the failed and unknown criteria.",
)

adsl = Table(
    "adsl",
    metadata,
    _c("STUDYID", String, "Study identifier.", nullable=False),
    _c("USUBJID", String, "Unique subject identifier.", nullable=False),
    _c(
        "SUBJID",
        String,
        "Subject identifier for the study (USUBJID without the study prefix).",
        nullable=False,
    ),
    _c("SITEID", String, "Study site identifier.", nullable=False),
    _c("AGE", Integer, "Age at consent (years)."),
    _c("AGEU", String, "Age units."),
    _c("SEX", String, "Sex: F, M or U (from FHIR administrative gender; other and unknown: U)."),
    _c(
        "RACE",
        String,
        "Race, from the US Core race extension when the site sends it (core.subjects.race).",
    ),
    _c("ARMCD", String, "Planned arm code: A or B; null if not randomised."),
    _c("ARM", String, "Description of planned arm; null if not randomised."),
    _c(
        "ACTARMCD",
        String,
        "Actual arm code: A when a secondary cytoreductive surgery is dated on or after "
        "randomisation and before the first progression (to the data cut-off), else B when a "
        "drug was administered then; null if not treated or not randomised.",
    ),
    _c("ACTARM", String, "Description of actual arm (decodes ACTARMCD)."),
    _c(
        "ARMNRS",
        String,
        "Reason arm and/or actual arm is null: SCREEN FAILURE (never randomised) or "
        "ASSIGNED, NOT TREATED (randomised, no treatment by the data cut-off).",
    ),
    _c("TRT01P", String, "Planned treatment for period 01."),
    _c("TRT01A", String, "Actual treatment for period 01 (as ACTARM)."),
    _c("RANDDT", Date, "Date of randomisation."),
    _c("RANDFL", String, "Randomised population flag (Y/N)."),
    _c("ITTFL", String, "Intent-to-treat population flag (Y/N)."),
    _c("SAFFL", String, "Safety population flag: Y when randomised and treated (ACTARMCD)."),
    _c("ELIGFL", String, "Eligible per the derived criteria (Y/N/U)."),
    _c("DTHFL", String, "Subject death flag: Y, or null."),
    _c("DTHDT", Date, "Date of death."),
    _c(
        "EOSSTT",
        String,
        "End of study status: COMPLETED, DISCONTINUED or ONGOING, from ResearchSubject.status, "
        "its period end and death over the PFS window; null if not randomised or not known.",
    ),
    schema="analysis",
    comment="ADaM subject-level analysis dataset (one row per subject).",
)

adtte = Table(
    "adtte",
    metadata,
    _c("STUDYID", String, "Study identifier.", nullable=False),
    _c("USUBJID", String, "Unique subject identifier.", nullable=False),
    _c("PARAMCD", String, "Parameter code: PFS, OS, TFST.", nullable=False),
    _c("PARAM", String, "Parameter.", nullable=False),
    _c("PARAMN", Integer, "Parameter (N): 1 PFS, 2 OS, 3 TFST.", nullable=False),
    _c("STARTDT", Date, "Time-to-event origin date (randomisation).", nullable=False),
    _c("ADT", Date, "Analysis date (event or censoring).", nullable=False),
    _c("AVAL", Integer, "Analysis value: ADT - STARTDT + 1.", nullable=False),
    _c("AVALU", String, "Analysis value unit.", nullable=False),
    _c("CNSR", Integer, "Censor: 0 event, 1 censored.", nullable=False),
    _c("EVNTDESC", String, "Event description."),
    _c("CNSDTDSC", String, "Censor date description."),
    _c("SRCDOM", String, "Source data: ADSL, or the SDTM domain of the record (RS, LB, CM)."),
    _c("SRCVAR", String, "Source variable: RANDDT, DTHDT, RSDTC, LBDTC or CMSTDTC."),
    _c("SRCSEQ", Integer, "Source sequence (not used for FHIR sources)."),
    _c("SRCID", String, "Source resource id."),
    _c("RULE", Integer, "Row of the censoring table applied (1-5, rescue_pipeline.rules.tte)."),
    _c("SRCFTYP", String, "FHIR resource type of the source record."),
    _c("SRCFELM", String, "FHIR element dated in the source record."),
    schema="analysis",
    comment="ADaM time-to-event dataset: one row per randomised subject and parameter.",
)

derivation_runs = Table(
    "derivation_runs",
    metadata,
    _c("derived_at", String, "When (UTC, ISO 8601).", nullable=False),
    _c("settings", JSON, "Rule settings used (analysis section of sites.yaml, cut-off resolved)."),
    _c("rows", JSON, "Rows per analysis table."),
    _c("seconds", Double, "Derivation time."),
    schema="analysis",
    comment="One row per derivation run: settings and row counts.",
)

ANALYSIS_TABLES = (eligibility, eligibility_summary, adsl, adtte, derivation_runs)
