"""Codes with their descendants and drug details (rule book §1), worked by hand from the rule book.

Each test builds a small hand-made site for real (landing, core, and where IN01 or IN02 is the
point, analysis) and checks the rows the rule book gives. The story shared by the eligibility
examples: first-line carboplatin every 21 days from 2022-03-08 to 2022-06-21, a normal CA-125 on
2022-08-15 (time without disease), a SecondaryCancerCondition on 2023-01-10 (the first
recurrence), randomised on 2023-03-01.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest

from rescue_pipeline.core.terminology import value_sets
from rescue_pipeline.quality.suites import suites_folder
from tests.core.conftest import ca125, dose, patient, subject

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOCAL = "https://site-t.example/fhir/CodeSystem/diagnosis"
FIRST_LINE = [date(2022, 3, 8) + timedelta(days=21 * i) for i in range(6)]  # .. 2022-06-21
RECURRENCE = "2023-01-10"


def rows(con: Any, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


def primary(
    cid: str,
    pid: str,
    codings: list[tuple[str, str]],
    *,
    profile: bool = True,
    histology: str = "8461/3",
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": s, "code": k} for s, k in codings]},
        "onsetDateTime": "2021-11-02",
        "extension": [
            {
                "url": f"{MCODE}/mcode-histology-morphology-behavior",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/icd-o-3",
                            "code": histology,
                        }
                    ]
                },
            }
        ],
    }
    if profile:
        c["meta"] = {"profile": [f"{MCODE}/mcode-primary-cancer-condition"]}
    return c


def recurrence_story(pid: str = "p1") -> dict[str, list[Any]]:
    """First line, a normal CA-125, then a first recurrence (module docstring)."""
    return {
        "Observation": [ca125(f"{pid}-normal", pid, 12.0, "U/mL", day="2022-08-15T10:00:00Z")],
        "Condition": [
            {
                "resourceType": "Condition",
                "id": f"{pid}-recurrence",
                "meta": {"profile": [f"{MCODE}/mcode-secondary-cancer-condition"]},
                "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": SNOMED, "code": "128462008"}]},
                "onsetDateTime": RECURRENCE,
            }
        ],
        "MedicationAdministration": [
            dose(f"{pid}-carbo{i}", pid, "40048", f"{day}T10:00:00Z")
            for i, day in enumerate(FIRST_LINE)
        ],
    }


def one_subject(*conditions: dict[str, Any], **more: list[Any]) -> dict[str, list[Any]]:
    files = recurrence_story()
    files["Condition"] = [*conditions, *files["Condition"]]
    for rtype, extra in more.items():
        files[rtype] = [*files.get(rtype, []), *extra]
    return {
        "Patient": [patient("p1")],
        "ResearchSubject": [subject("r1", "p1", start="2023-03-01")],
        **files,
    }


def criterion(con: Any, code: str) -> tuple[str, str]:
    [(status, value)] = rows(
        con, "SELECT status, value FROM analysis.eligibility WHERE criterion = ?", [code]
    )
    return status, value


def unmapped(con: Any, code: str) -> list[tuple[Any, ...]]:
    return rows(
        con,
        "SELECT resource_type, element, system, code, display, resources, "
        "resources_recognised_otherwise FROM core.unmapped_codes WHERE code = ?",
        [code],
    )


# --- codes with their descendants: primary sites -------------------------------------------


def test_icd10cm_header_code_C57_0_is_a_tubal_primary(build) -> None:
    con = build(one_subject(primary("dx", "p1", [(ICD10CM, "C57.0")])), analysis=True)
    assert rows(con, "SELECT primary_site, primary_system, primary_code FROM core.diagnoses") == [
        ("fallopian_tube", ICD10CM, "C57.0")
    ]
    assert criterion(con, "IN01") == ("met", "recurrence 1 of fallopian_tube")
    assert unmapped(con, "C57.0") == []


def test_C57_4_is_a_recorded_non_qualifying_primary_and_IN01_not_met(build) -> None:
    con = build(one_subject(primary("dx", "p1", [(ICD10CM, "C57.4")])), analysis=True)
    assert rows(con, "SELECT primary_site, primary_code, histology_class FROM core.diagnoses") == [
        ("other", "C57.4", "epithelial")
    ]
    assert criterion(con, "IN01") == ("not_met", "primary site other (C57.4)")
    # counted unmapped although its profile recognised the Condition
    assert unmapped(con, "C57.4") == [("Condition", "code", ICD10CM, "C57.4", None, 1, 1)]


def test_local_code_only_primary_is_IN01_unknown(build) -> None:
    con = build(one_subject(primary("dx", "p1", [(LOCAL, "OVCA")])), analysis=True)
    assert rows(con, "SELECT count(*) FROM core.diagnoses") == [(0,)]
    assert criterion(con, "IN01") == ("unknown", "primary cancer not recorded")
    assert unmapped(con, "OVCA") == [("Condition", "code", LOCAL, "OVCA", None, 1, 1)]


def test_local_code_mapped_to_C57_4_by_the_site_is_a_standard_non_qualifying_primary(
    build,
) -> None:
    con = build(
        one_subject(primary("dx", "p1", [(LOCAL, "ADNEXA")])),
        concept_map=[
            {"system": LOCAL, "code": "ADNEXA", "target_system": ICD10CM, "target_code": "C57.4"}
        ],
        analysis=True,
    )
    assert criterion(con, "IN01") == ("not_met", "primary site other (C57.4)")


def test_a_qualifying_primary_decides_IN01_before_a_recorded_non_qualifying_one(build) -> None:
    earlier_breast = primary("breast", "p1", [(ICD10, "C50.9")])
    earlier_breast["onsetDateTime"] = "2010-05-01"
    con = build(one_subject(earlier_breast, primary("dx", "p1", [(ICD10, "C56")])), analysis=True)
    assert rows(con, "SELECT source_id, primary_site FROM core.diagnoses ORDER BY 1") == [
        ("breast", "other"),
        ("dx", "ovary"),
    ]
    assert criterion(con, "IN01") == ("met", "recurrence 1 of ovary")


def test_dotless_icd10cm_code_matches(build) -> None:
    con = build(one_subject(primary("dx", "p1", [(ICD10CM, "C5700")])))
    assert rows(con, "SELECT primary_site, primary_code FROM core.diagnoses") == [
        ("fallopian_tube", "C5700")
    ]


# Hand-read from the rule book, §1 and §6: each code either is a listed root (C56, C57.0, C48.1,
# C48.2) or starts with one once normalised (upper case, trimmed, no dot), under ICD-10 or
# ICD-10-CM alike; a parent (C57, C48) or a sibling (C57.4, C48.0) of a root is not below it.
# Codes below a root are matched by prefix whether or not the code exists in a release: C560
# reads C56.0, which starts with C56 (ICD-10-CM has C56.1-C56.9; C56.0 is an invalid code that
# the rule book's prefix rule still places under the ovary, so that a typo never excludes).
HIERARCHY_CASES = [
    (ICD10CM, "C56", "ovary"),  # header code under ICD-10-CM
    (ICD10, "C56", "ovary"),
    (ICD10CM, "C56.1", "ovary"),
    (ICD10CM, "C56.9", "ovary"),
    (ICD10, "C56.3", "ovary"),  # ICD-10-CM child sent as ICD-10: the systems are interchangeable
    (ICD10CM, "C569", "ovary"),  # dotless
    (ICD10CM, "C560", "ovary"),  # dotless C56.0: starts with C56 (see above)
    (ICD10CM, "C5", "other"),  # shorter than a category: below no root
    (ICD10CM, "C57", "other"),  # parent of C57.0 is not below it
    (ICD10CM, "C57.0", "fallopian_tube"),
    (ICD10, "C57.00", "fallopian_tube"),
    (ICD10CM, "C57.01", "fallopian_tube"),
    (ICD10CM, "C57.02", "fallopian_tube"),
    (ICD10CM, " c57.01 ", "fallopian_tube"),  # trimmed, upper case
    (ICD10CM, "C57.1", "other"),  # broad ligament: a sibling
    (ICD10CM, "C57.4", "other"),
    (ICD10CM, "C574", "other"),
    (ICD10, "C48.1", "primary_peritoneal"),
    (ICD10CM, "C481", "primary_peritoneal"),  # dotless C48.1
    (ICD10CM, "C48.10", "primary_peritoneal"),  # below C48.1 by prefix
    (ICD10CM, "C48.2", "primary_peritoneal"),
    (ICD10CM, "C48.0", "other"),  # retroperitoneum: a sibling
    (ICD10CM, "C480", "other"),
    (ICD10CM, "C48", "other"),  # the parent
    (ICD10CM, "C48.8", "other"),
    (SNOMED, "363443007", "ovary"),  # SNOMED CT: the listed concept
    (SNOMED, "93934004", "other"),  # SNOMED CT: no hierarchy, an unlisted concept is other
    (LOCAL, "C56", None),  # a local system is not ICD: no prefix match, no site
]


def test_icd_codes_match_their_roots_by_prefix_and_snomed_only_as_listed(build) -> None:
    files: dict[str, list[Any]] = {"Patient": [], "ResearchSubject": [], "Condition": []}
    for i, (system, code, _site) in enumerate(HIERARCHY_CASES):
        pid = f"p{i}"
        files["Patient"].append(patient(pid))
        files["ResearchSubject"].append(subject(f"r{i}", pid, ident=f"RSC-T-{i:04d}"))
        files["Condition"].append(primary(f"dx{i}", pid, [(system, code)]))
    con = build(files)
    got = dict(rows(con, "SELECT source_id, primary_site FROM core.diagnoses"))
    want = {f"dx{i}": site for i, (_, _, site) in enumerate(HIERARCHY_CASES) if site}
    assert got == want
    # every case that is not a qualifying site is counted unmapped; the qualifying ones are not
    counted = {(s, k) for s, k in rows(con, "SELECT system, code FROM core.unmapped_codes")}
    assert counted == {
        (system, code) for system, code, site in HIERARCHY_CASES if site in (None, "other")
    }


def test_C57_4_without_a_primary_profile_is_no_diagnosis_but_counted_unmapped(build) -> None:
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "Condition": [primary("dx", "p1", [(ICD10CM, "C57.4")], profile=False)],
        }
    )
    assert rows(con, "SELECT count(*) FROM core.diagnoses") == [(0,)]
    assert unmapped(con, "C57.4") == [("Condition", "code", ICD10CM, "C57.4", None, 1, 0)]


def test_a_qualifying_code_makes_a_primary_without_profile(build) -> None:
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "Condition": [primary("dx", "p1", [(LOCAL, "X1"), (ICD10, "C48.2")], profile=False)],
        }
    )
    assert rows(con, "SELECT primary_site FROM core.diagnoses") == [("primary_peritoneal",)]
    assert unmapped(con, "X1") == [("Condition", "code", LOCAL, "X1", None, 1, 1)]


def test_harmless_local_code_beside_loinc_is_counted_but_leaves_the_unmapped_share(
    build,
) -> None:
    beside = [
        {"system": "https://site-t.example/lab", "code": "CA125-SERUM", "display": "CA-125"},
        {"system": "http://loinc.org", "code": "10334-1"},
    ]
    alone = [{"system": "https://site-t.example/lab", "code": "HE4", "display": "HE4"}]
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "Observation": [
                ca125("o1", "p1", 50, "U/mL", coding=beside),
                ca125("o2", "p1", 51, "U/mL", coding=beside),
                ca125("o3", "p1", 52, "U/mL"),
                ca125("o4", "p1", 70, "pmol/L", coding=alone),
            ],
        }
    )
    assert rows(con, "SELECT count(*) FROM core.ca125_measurements") == [(3,)]
    assert rows(
        con,
        "SELECT code, resources, resources_recognised_otherwise FROM core.unmapped_codes "
        "ORDER BY code",
    ) == [("CA125-SERUM", 2, 2), ("HE4", 1, 0)]
    suite = json.loads((suites_folder() / "core.unmapped_share.json").read_text())
    # one resource (o4) of four coded ones has no recognised code
    assert rows(con, suite["meta"]["query"]) == [("site-t", "site-t", 0.25)]


# --- doses: contained Medications, products, unknown codes, unresolved references ---------------


def contained_dose(
    mid: str, day: str, codings: list[dict[str, str]], *, reference: str = "#med"
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": mid,
        "status": "completed",
        "contained": [{"resourceType": "Medication", "id": "med", "code": {"coding": codings}}],
        "medicationReference": {"reference": reference},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": day,
    }


CARBOPLATIN_AFTER_A_LOCAL_CODE = [
    {"system": "https://site-t.example/pharmacy", "code": "CARBO-450", "display": "Carbo 450"},
    {"system": RXNORM, "code": "40048", "display": "carboplatin"},
]


def test_contained_medication_dose_counts_and_moves_last_platinum(build) -> None:
    # 2022-07-12, 21 days after the sixth cycle: the first line's last platinum; PFI to the
    # recurrence on 2023-01-10 = 182 days, under 6 x 30.4375 (rule book §4): not sensitive
    last = contained_dose("contained", "2022-07-12T10:00:00Z", CARBOPLATIN_AFTER_A_LOCAL_CODE)
    con = build(
        one_subject(primary("dx", "p1", [(ICD10, "C56")]), MedicationAdministration=[last]),
        analysis=True,
    )
    assert rows(
        con, "SELECT drug, platinum FROM core.drug_administrations WHERE source_id = 'contained'"
    ) == [("carboplatin", True)]
    assert rows(con, "SELECT cycles, ended_on::VARCHAR FROM core.regimens WHERE line = 1") == [
        (7, "2022-07-12")
    ]
    assert criterion(con, "IN02") == ("not_met", "PFI 182 days")
    # the local pharmacy code beside the RxNorm one is counted, recognised otherwise
    assert unmapped(con, "CARBO-450") == [
        (
            "MedicationAdministration",
            "medication",
            "https://site-t.example/pharmacy",
            "CARBO-450",
            "Carbo 450",
            1,
            1,
        )
    ]


def test_unresolved_medication_reference_is_counted_and_not_a_dose(build) -> None:
    # the same seventh cycle, but its reference names no contained id and no Medication: the
    # last platinum stays 2022-06-21, PFI 203 days (>= 183, sensitive)
    wrong_id = contained_dose(
        "wrong-id", "2022-07-12T10:00:00Z", CARBOPLATIN_AFTER_A_LOCAL_CODE, reference="#other"
    )
    missing = contained_dose("missing", "2022-07-12T11:00:00Z", [], reference="Medication/none")
    con = build(
        one_subject(
            primary("dx", "p1", [(ICD10, "C56")]), MedicationAdministration=[wrong_id, missing]
        ),
        analysis=True,
    )
    assert rows(con, "SELECT reason, resources FROM core.excluded_resources") == [
        ("unresolved_reference", 2)
    ]
    assert criterion(con, "IN02") == ("met", "PFI 203 days")


def test_contained_medications_of_requests_and_statements_count(build) -> None:
    olaparib = [{"system": RXNORM, "code": "1597582", "display": "olaparib"}]
    statement = {
        "resourceType": "MedicationStatement",
        "id": "ms",
        "status": "active",
        "contained": [{"resourceType": "Medication", "id": "m1", "code": {"coding": olaparib}}],
        "medicationReference": {"reference": "#m1"},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2022-08-01"},
    }
    request = {
        "resourceType": "MedicationRequest",
        "id": "mr",
        "status": "active",
        "intent": "order",
        "contained": [{"resourceType": "Medication", "id": "m1", "code": {"coding": olaparib}}],
        "medicationReference": {"reference": "#m1"},
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2022-08-02",
    }
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "MedicationStatement": [statement],
            "MedicationRequest": [request],
        }
    )
    assert rows(
        con,
        "SELECT source_type, drug, kind, started_on::VARCHAR FROM core.drug_administrations "
        "ORDER BY 1",
    ) == [
        ("MedicationRequest", "olaparib", "oral_course", "2022-08-02"),
        ("MedicationStatement", "olaparib", "oral_course", "2022-08-01"),
    ]


def test_product_level_rxnorm_counts_as_ingredient(build) -> None:
    medication = {
        "resourceType": "Medication",
        "id": "carbo-vial",
        "code": {"coding": [{"system": RXNORM, "code": "597195"}]},
    }
    by_reference = {
        "resourceType": "MedicationAdministration",
        "id": "referenced",
        "status": "completed",
        "medicationReference": {"reference": "Medication/carbo-vial"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2023-02-01T10:00:00Z",
    }
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "Medication": [medication],
            "MedicationAdministration": [
                dose("direct", "p1", "597195", "2023-01-01T10:00:00Z"),  # carboplatin SCD
                dose("gem", "p1", "1719003", "2023-01-01T10:00:00Z"),  # gemcitabine SCD
                by_reference,
            ],
        }
    )
    assert rows(
        con,
        "SELECT source_id, drug, rxnorm, platinum FROM core.drug_administrations ORDER BY 1",
    ) == [
        ("direct", "carboplatin", "40048", True),
        ("gem", "gemcitabine", "12574", False),
        ("referenced", "carboplatin", "40048", True),
    ]
    assert rows(con, "SELECT count(*) FROM core.unmapped_codes") == [(0,)]


def test_unknown_drug_code_is_counted_unmapped_with_display(build) -> None:
    ondansetron = {
        "resourceType": "MedicationAdministration",
        "id": "antiemetic",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": "312086", "display": "ondansetron 2 MG/ML Injection"}
            ]
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2023-01-01T10:00:00Z",
    }
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "MedicationAdministration": [ondansetron],
        }
    )
    assert rows(con, "SELECT count(*) FROM core.drug_administrations") == [(0,)]
    assert unmapped(con, "312086") == [
        (
            "MedicationAdministration",
            "medication",
            RXNORM,
            "312086",
            "ondansetron 2 MG/ML Injection",
            1,
            0,
        )
    ]


def test_every_product_reads_as_an_ingredient_of_the_drug_table() -> None:
    vs = value_sets()
    assert vs["drug_products"]
    for code, product in vs["drug_products"].items():
        assert product["ingredient"] in vs["drugs"], code
        assert product["tty"] in ("SCD", "SBD"), code


@pytest.mark.parametrize("alias", ["icd10", "icd10cm"])
def test_both_icd_systems_are_one_hierarchical_family(alias: str) -> None:
    assert value_sets()["hierarchical_systems"][alias] == "icd"
