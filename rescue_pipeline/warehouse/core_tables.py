"""Core tables: what analysts query and the derivations read (docs/warehouse.md, `core` schema).

Same MetaData as tables.py, so the data dictionary covers both. Every row carries site_id and
the FHIR resource type and id it came from; nothing here identifies a person (no names,
addresses, MRNs or exact birth dates: birth year only).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Column, Date, Double, Integer, String, Table

from rescue_pipeline.warehouse.tables import _c, metadata


def _source(*, nullable: bool = False) -> list[Column[Any]]:
    return [
        _c("site_id", String, "Site (sites.yaml id).", nullable=False),
        _c("source_type", String, "FHIR resource type the row came from.", nullable=nullable),
        _c("source_id", String, "FHIR id of that resource (within the site).", nullable=nullable),
    ]


subjects = Table(
    "subjects",
    metadata,
    _c(
        "usubjid",
        String,
        "Pseudonymous subject id: RESCUE-<SITE>-<NNNN> or RESCUE-<site>-X<hmac>.",
        nullable=False,
    ),
    _c("sex", String, "Administrative gender as sent (female expected)."),
    _c(
        "race",
        String,
        "CDISC RACE from the US Core race extension's OMB categories (MULTIPLE for two or "
        "more; UNKNOWN, NOT REPORTED from the null flavours UNK, ASKU); null if not sent.",
    ),
    _c("birth_year", Integer, "Year of birth (the exact date stays in raw)."),
    _c(
        "age_at_consent",
        Integer,
        "Age in completed years on the consent date; null when a partial birth date leaves it "
        "open.",
    ),
    _c(
        "age_min",
        Integer,
        "Youngest age in completed years on age_on over every day the birth date allows.",
    ),
    _c("age_max", Integer, "Oldest such age; equal to age_min when the birth date decides it."),
    _c("age_on", Date, "The date the ages refer to: consent, else randomisation."),
    _c("age_basis", String, "consent or randomisation (no Consent sent)."),
    _c("arm", String, "Randomised arm: A (surgery + chemotherapy), B (chemotherapy alone), null."),
    _c(
        "randomised_on",
        Date,
        "Randomisation date (ResearchSubject.period.start) for randomised subjects.",
    ),
    _c(
        "screening_ended_on",
        Date,
        "End of screening sent by the site (ResearchSubject.period.end) for a subject never "
        "randomised.",
    ),
    _c(
        "study_ended_on",
        Date,
        "End of participation sent by the site (ResearchSubject.period.end) for a randomised "
        "subject.",
    ),
    _c("consented_on", Date, "Date of the research consent (site's local date)."),
    _c("consent_data_transfer", Boolean, "Consent is active and permits disclose (data transfer)."),
    _c("died_on", Date, "Date of death (Patient.deceasedDateTime), local date."),
    _c("subject_status", String, "ResearchSubject.status as sent."),
    *_source(),
    schema="core",
    comment="One row per trial subject (a ResearchSubject of the trial, nct_id in sites.yaml).",
)

diagnoses = Table(
    "diagnoses",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c(
        "primary_site",
        String,
        "ovary (ICD-10/-CM C56 and below, SNOMED CT 363443007), fallopian_tube (C57.0 and "
        "below) or primary_peritoneal (C48.1, C48.2 and below); other: a recorded, "
        "non-qualifying primary, coded only with standard codes (ICD-10, ICD-10-CM, SNOMED CT) "
        "outside these (e.g. C57.4). A primary coded only with unmapped site-local codes has "
        "no row.",
    ),
    _c("primary_system", String, "System of the standard code the site was read from."),
    _c("primary_code", String, "That code, as sent or as mapped by the site (e.g. C57.00)."),
    _c("histology_code", String, "ICD-O-3 morphology/behaviour as sent, e.g. 8461/3."),
    _c("morphology", Integer, "ICD-O-3 morphology code (4 digits)."),
    _c("behaviour", String, "invasive (/3), borderline (/1), in_situ (/2), benign (/0)."),
    _c("histology_class", String, "epithelial (ICD-O-3 8010-8576) or non_epithelial."),
    _c("stage", String, "FIGO stage group, when a staging observation was sent."),
    _c("diagnosed_on", Date, "Diagnosis date: onset, else recorded date."),
    *_source(),
    schema="core",
    comment="Primary cancer diagnoses (mCODE PrimaryCancerCondition).",
)

drug_administrations = Table(
    "drug_administrations",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("drug", String, "Ingredient name (RxNorm)."),
    _c("rxnorm", String, "RxNorm ingredient code."),
    _c("drug_class", String, "platinum, taxane, parp_inhibitor, anti_vegf, ..."),
    _c("platinum", Boolean, "A platinum agent."),
    _c("maintenance_capable", Boolean, "PARP inhibitor or bevacizumab (may be maintenance)."),
    _c("kind", String, "administration (one dose) or oral_course (a period)."),
    _c("started_on", Date, "Date given (start of the course)."),
    _c("ended_on", Date, "End of an oral course; null for single doses."),
    _c(
        "dated_by",
        String,
        "The element that dated the record (effectiveDateTime, effectivePeriod.start, authoredOn, "
        "...).",
    ),
    *_source(),
    schema="core",
    comment="Anticancer drugs given: administrations, and oral courses (requests, statements).",
)

regimens = Table(
    "regimens",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("line", Integer, "Line of therapy (1 = first line).", nullable=False),
    _c(
        "maintenance",
        Boolean,
        "The line's maintenance phase (PARP inhibitor or bevacizumab alone).",
    ),
    _c("drugs", String, "Drugs, comma-separated, alphabetical."),
    _c("platinum", Boolean, "Platinum-containing."),
    _c("started_on", Date, "First administration."),
    _c("ended_on", Date, "Last administration (or end of the oral course)."),
    _c(
        "cycles",
        Integer,
        "Cycles (a platinum dose >= 14 days after the last cycle start begins one).",
    ),
    _c("administrations", Integer, "Administrations in the regimen."),
    *_source(),
    schema="core",
    comment="Lines of therapy, grouped by rescue_pipeline.rules.regimens (documented rule).",
)

recurrences = Table(
    "recurrences",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("number", Integer, "1 = first recurrence, 2 = second, ...", nullable=False),
    _c("recurred_on", Date, "Date of the worsening that defines it.", nullable=False),
    *_source(),
    schema="core",
    comment="Recurrences before randomisation (or consent), per rescue_pipeline.rules.recurrence.",
)

ca125_measurements = Table(
    "ca125_measurements",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("measured_on", Date, "Date measured (site's local date).", nullable=False),
    _c("measured_at", String, "Date-time as sent (with its offset)."),
    _c(
        "value_u_per_ml",
        Double,
        "Value in U/mL (UCUM conversion); null when the unit cannot be converted.",
    ),
    _c("below_lod", Boolean, "Below the limit of detection (comparator '<')."),
    _c(
        "unit_convertible",
        Boolean,
        "False: the unit is not one CA-125 converts from; value kept as sent.",
    ),
    _c("original_value", Double, "Value as sent."),
    _c("original_unit", String, "Unit as sent (UCUM code, else unit text)."),
    *_source(),
    schema="core",
    comment="Every CA-125 result (LOINC 10334-1 or a mapped site code), in U/mL.",
)

surgeries = Table(
    "surgeries",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("surgery_type", String, "primary, interval or secondary (cytoreductive)."),
    _c("performed_on", Date, "Date of surgery."),
    _c("residual_disease", String, "R0, R1, R2 or not_recorded."),
    _c("residual_source_id", String, "Observation the residual disease came from."),
    *_source(),
    schema="core",
    comment="Cytoreductive surgeries with residual disease.",
)

resectability = Table(
    "resectability",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("judged_on", Date, "Date of the judgement."),
    _c(
        "judgement",
        String,
        "complete-resection-feasible, palliative-only or unresectable-metastasis.",
    ),
    *_source(),
    schema="core",
    comment="The surgeon's resectability judgement.",
)

screening_findings = Table(
    "screening_findings",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("finding", String, "interfering_malignancy or comorbidity_precluding_surgery."),
    _c("present", Boolean, "Whether the finding is present."),
    _c("recorded_on", Date, "Date recorded."),
    *_source(),
    schema="core",
    comment="Screening findings behind exclusions EX04 and EX08.",
)

disease_statuses = Table(
    "disease_statuses",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("assessed_on", Date, "Date."),
    _c(
        "status",
        String,
        "ned, partial_remission, improved, stable, worsened, undetermined, distant_metastasis.",
    ),
    _c("imaging", Boolean, "Evidence type imaging (then also a tumour assessment)."),
    *_source(),
    schema="core",
    comment="Cancer disease status records (mCODE CancerDiseaseStatus, LOINC 97509-4).",
)

tumour_assessments = Table(
    "tumour_assessments",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("assessed_on", Date, "Date of the assessment."),
    _c("response", String, "Overall response: CR, PR, SD, PD or NE."),
    _c("basis", String, "recist (RECIST 1.1 observation) or imaging_disease_status."),
    *_source(),
    schema="core",
    comment="Tumour response assessments as recorded (the pipeline does not re-measure lesions).",
)

progression_events = Table(
    "progression_events",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c("progressed_on", Date, "Date of documented progression."),
    _c(
        "basis",
        String,
        "recist, imaging_disease_status, disease_status (clinical) or gcig (CA-125).",
    ),
    *_source(),
    schema="core",
    comment="Documented progression after randomisation.",
)

partial_dates = Table(
    "partial_dates",
    metadata,
    _c("usubjid", String, "Subject.", nullable=False),
    _c(
        "kind",
        String,
        "Which core table the record is in with no date: tumour_assessment, disease_status, "
        "resectability, finding, dose; or ca125 (a CA-125 result, which ca125_measurements "
        "holds only with a full date), or secondary_onset (a secondary cancer Condition, "
        "whose onset may define a recurrence).",
        nullable=False,
    ),
    _c("earliest", Date, "The earliest full date the partial date allows.", nullable=False),
    _c("latest", Date, "The latest full date it allows.", nullable=False),
    _c("precision", String, "month (YYYY-MM) or year (YYYY).", nullable=False),
    _c("value_u_per_ml", Double, "CA-125 results only: the value in U/mL."),
    _c("below_lod", Boolean, "CA-125 results only: below the limit of detection ('<')."),
    *_source(),
    schema="core",
    comment=(
        "Records dated only to the month or year. The screening rules try every full date "
        "each allows and decide only where all give the same answer (else unknown)."
    ),
)

unmapped_codes = Table(
    "unmapped_codes",
    metadata,
    _c("site_id", String, "Site.", nullable=False),
    _c("resource_type", String, "FHIR type.", nullable=False),
    _c("element", String, "Coded element, e.g. code or medication."),
    _c("system", String, "Code system as sent."),
    _c("code", String, "Code as sent."),
    _c("display", String, "A display sent with it."),
    _c(
        "resources",
        BigInteger,
        "Resources carrying this code (it matched nothing), whatever else recognised them.",
        nullable=False,
    ),
    _c(
        "resources_recognised_otherwise",
        BigInteger,
        "Of those, resources recognised by another code, their mCODE profile or their "
        "Medication; resources minus this = resources the core layer could not use.",
        nullable=False,
    ),
    schema="core",
    comment="Codes in no value set, hierarchy or site concept map, per site, system and code "
    "(rule book §1: counted whatever else recognised the resource).",
)

excluded_resources = Table(
    "excluded_resources",
    metadata,
    _c("site_id", String, "Site.", nullable=False),
    _c("resource_type", String, "FHIR type.", nullable=False),
    _c(
        "reason",
        String,
        "Why left out of core (entered-in-error, not-done, consent_withdrawn, "
        "unresolved_reference: a medicationReference to no coded Medication, ...).",
        nullable=False,
    ),
    _c("resources", BigInteger, "How many resources.", nullable=False),
    schema="core",
    comment="Resources kept in raw but left out of core, counted.",
)

resource_accounting = Table(
    "resource_accounting",
    metadata,
    _c("site_id", String, "Site.", nullable=False),
    _c("resource_type", String, "FHIR type.", nullable=False),
    _c(
        "reason",
        String,
        "used (read by a core table), or why not: entered-in-error, not-done, cancelled, "
        "consent_withdrawn, other_study, not_a_trial_subject, unmapped_code, no_code, "
        "medication_not_given (no dose references it), no_full_date (no date, or a partial "
        "one on a record only a dated rule reads, such as a recurrence), recognised_not_used "
        "(a recognised code no core table takes, e.g. metastasis at diagnosis), "
        "type_not_read, unaccounted.",
        nullable=False,
    ),
    _c("resources", BigInteger, "Current resources (raw.fhir_resources).", nullable=False),
    schema="core",
    comment=(
        "Every current resource in raw, per site and type: used by core or counted with the "
        "first reason that kept it out. Per site and type the rows add up to raw's count."
    ),
)

build_runs = Table(
    "build_runs",
    metadata,
    _c("built_at", String, "When the core layer was built (UTC, ISO 8601).", nullable=False),
    _c("settings", JSON, "Rule settings used (analysis section of sites.yaml)."),
    _c("rows", JSON, "Rows per core table."),
    _c("seconds", Double, "Build time."),
    schema="core",
    comment="One row per core build: when, with which settings, how many rows.",
)

CORE_TABLES = (
    subjects,
    diagnoses,
    drug_administrations,
    regimens,
    recurrences,
    ca125_measurements,
    surgeries,
    resectability,
    screening_findings,
    disease_statuses,
    tumour_assessments,
    progression_events,
    partial_dates,
    unmapped_codes,
    excluded_resources,
    resource_accounting,
    build_runs,
)
