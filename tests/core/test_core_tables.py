"""Core rules on small hand-made FHIR inputs, each with the rows expected."""

from __future__ import annotations

import pytest

from rescue_pipeline.core import pseudonym
from tests.core.conftest import KEY, ca125, consent, dose, patient, subject


def rows(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_ca125_units_are_converted_to_u_per_ml_and_unknown_units_kept_flagged(build) -> None:
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "Observation": [
                ca125("o1", "p1", 40.0, "U/mL"),
                ca125("o2", "p1", 41.5, "kU/L"),
                ca125("o3", "p1", 42500, "U/L"),
                ca125("o4", "p1", 7.0, "ng/mL"),
                ca125("o5", "p1", 5, "U/mL", comparator="<"),
                ca125("o6", "p1", 99, "U/mL", status="entered-in-error"),
            ],
        }
    )
    got = rows(
        con,
        "SELECT source_id, value_u_per_ml, unit_convertible, below_lod, original_value, original_unit FROM core.ca125_measurements ORDER BY 1",
    )
    assert got == [
        ("o1", 40.0, True, False, 40.0, "U/mL"),
        ("o2", 41.5, True, False, 41.5, "kU/L"),
        ("o3", 42.5, True, False, 42500.0, "U/L"),
        ("o4", None, False, False, 7.0, "ng/mL"),
        ("o5", 5.0, True, True, 5.0, "U/mL"),
    ]
    assert rows(con, "SELECT resource_type, reason, resources FROM core.excluded_resources") == [
        ("Observation", "entered-in-error", 1)
    ]


def test_site_local_codes_are_recognised_through_the_concept_map_and_unmapped_ones_counted(
    build,
) -> None:
    local = [{"system": "https://site-t.example/lab", "code": "CA125"}]
    other = [{"system": "https://site-t.example/lab", "code": "HE4", "display": "HE4"}]
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "Observation": [
                ca125("o1", "p1", 50, "U/mL", coding=local),
                ca125("o2", "p1", 70, "pmol/L", coding=other),
                ca125("o3", "p1", 71, "pmol/L", coding=other),
            ],
        },
        concept_map=[
            {
                "system": "https://site-t.example/lab",
                "code": "CA125",
                "target_system": "http://loinc.org",
                "target_code": "10334-1",
            }
        ],
    )
    assert rows(con, "SELECT source_id FROM core.ca125_measurements") == [("o1",)]
    assert rows(
        con, "SELECT resource_type, element, system, code, resources FROM core.unmapped_codes"
    ) == [("Observation", "code", "https://site-t.example/lab", "HE4", 2)]


def test_subject_row_age_arm_consent_and_death(build) -> None:
    con = build(
        {
            "Patient": [
                patient("p1", birth="1960-02-21", deceasedDateTime="2025-01-05T23:30:00-05:00"),
                patient("p2", birth="2005-02-20"),
            ],
            "ResearchSubject": [
                subject("r1", "p1", consent="c1"),
                subject("r2", "p2", ident="RSC-T-0002", arm=None, start=None),
            ],
            "Consent": [
                consent("c1", "p1", day="2024-02-20T10:00:00+01:00"),
                consent("c2", "p2", day="2024-02-20", actions=("collect", "use")),
            ],
        }
    )
    got = rows(
        con,
        "SELECT usubjid, birth_year, age_at_consent, arm, randomised_on::VARCHAR, consented_on::VARCHAR, consent_data_transfer, died_on::VARCHAR FROM core.subjects ORDER BY 1",
    )
    assert got == [
        (
            "RESCUE-T-0001",
            1960,
            63,
            "A",
            "2024-03-01",
            "2024-02-20",
            True,
            "2025-01-05",
        ),  # one day before the 64th birthday
        ("RESCUE-T-0002", 2005, 19, None, None, "2024-02-20", False, None),
    ]


def test_pseudonyms_without_identifier_are_keyed_and_stable(build) -> None:
    con = build({"Patient": [patient("p1")], "ResearchSubject": [subject("r1", "p1", ident=None)]})
    [(usubjid,)] = rows(con, "SELECT usubjid FROM core.subjects")
    assert usubjid == pseudonym.hashed_usubjid(KEY, "site-t", "p1")
    assert usubjid.startswith("RESCUE-site-t-X") and len(usubjid) == len("RESCUE-site-t-X") + 10
    assert pseudonym.hashed_usubjid(b"another-key-0123456789", "site-t", "p1") != usubjid
    assert pseudonym.usubjid_from_identifier("RSC-A-0042") == "RESCUE-A-0042"
    assert pseudonym.usubjid_from_identifier("A-0042") is None


def test_pseudonym_key_is_required_outside_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pseudonym.KEY_ENV, raising=False)
    with pytest.raises(pseudonym.PseudonymKeyMissing, match="RESCUE_PSEUDONYM_KEY is not set"):
        pseudonym.pseudonym_key()
    monkeypatch.setenv(pseudonym.KEY_ENV, "short")
    with pytest.raises(pseudonym.PseudonymKeyMissing, match="too short"):
        pseudonym.pseudonym_key()


def test_drug_administrations_and_regimens(build) -> None:
    doses = []
    for c in range(6):
        day = f"2023-{1 + c:02d}-05T10:00:00Z"
        doses += [dose(f"carbo{c}", "p1", "40048", day), dose(f"pacli{c}", "p1", "56946", day)]
    doses.append(dose("olap", "p1", "1597582", "2023-08-01T10:00:00Z"))
    doses.append(dose("unknown", "p1", "999999", "2023-08-01T10:00:00Z"))
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "MedicationAdministration": doses,
        }
    )
    assert rows(
        con, "SELECT count(*), count(*) FILTER (WHERE platinum) FROM core.drug_administrations"
    ) == [(13, 6)]
    assert rows(
        con,
        "SELECT line, maintenance, drugs, platinum, cycles, started_on::VARCHAR, ended_on::VARCHAR FROM core.regimens ORDER BY line, maintenance",
    ) == [
        (1, False, "carboplatin, paclitaxel", True, 6, "2023-01-05", "2023-06-05"),
        (1, True, "olaparib", False, 1, "2023-08-01", "2023-08-01"),
    ]
    assert rows(con, "SELECT code, resources FROM core.unmapped_codes") == [("999999", 1)]


MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition"


def _status(oid: str, pid: str, value: str, day: str, evidence_url: str | None) -> dict:
    obs = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "97509-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day,
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": value}]},
    }
    if evidence_url:
        obs["extension"] = [
            {
                "url": evidence_url,
                "valueCodeableConcept": {
                    "coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]
                },
            }
        ]
    return obs


def test_imaging_disease_status_is_a_tumour_assessment_under_both_mcode_extension_names(
    build,
) -> None:
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1", start="2024-03-01")],
            "Observation": [
                _status(
                    "stu4",
                    "p1",
                    "271299001",
                    "2024-06-01T10:00:00Z",
                    f"{MCODE}/mcode-cancer-disease-status-evidence-type",
                ),
                _status(
                    "stu1",
                    "p1",
                    "359746009",
                    "2024-05-01T10:00:00Z",
                    f"{MCODE}/mcode-evidence-type",
                ),
                _status("clinical", "p1", "268910001", "2024-04-01T10:00:00Z", None),
            ],
        }
    )
    assert rows(
        con, "SELECT source_id, response, basis FROM core.tumour_assessments ORDER BY 1"
    ) == [
        ("stu1", "SD", "imaging_disease_status"),
        ("stu4", "PD", "imaging_disease_status"),
    ]
    assert rows(con, "SELECT source_id, basis FROM core.progression_events") == [
        ("stu4", "imaging_disease_status")
    ]
    assert rows(con, "SELECT count(*) FROM core.disease_statuses") == [(3,)]


def _condition(cid: str, pid: str, code: str, profile: str | None, onset: str) -> dict:
    c = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "onsetDateTime": onset,
    }
    if profile:
        c["meta"] = {"profile": [f"{MCODE}/{profile}"]}
    return c


def test_cancer_conditions_are_primary_or_secondary_by_their_mcode_profile(build) -> None:
    doses = [dose(f"c{i}", "p1", "40048", f"2022-0{1 + i}-01T10:00:00Z") for i in range(6)]
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1", start="2025-01-01")],
            "MedicationAdministration": doses,
            "Observation": [ca125("normal", "p1", 12.0, "U/mL", day="2022-08-01T10:00:00Z")],
            "Condition": [
                # 128462008 coded, but claims the primary profile: not a recurrence
                _condition(
                    "primary-unspecified",
                    "p1",
                    "128462008",
                    "mcode-primary-cancer-condition",
                    "2023-01-01",
                ),
                # a child code of 128462008 with the secondary profile: a recurrence
                _condition(
                    "brain-mets", "p1", "94225005", "mcode-secondary-cancer-condition", "2023-06-01"
                ),
            ],
        }
    )
    assert rows(con, "SELECT number, recurred_on::VARCHAR, source_id FROM core.recurrences") == [
        (1, "2023-06-01", "brain-mets")
    ]
    # rule book §1: a code that matches nothing is counted, whatever else recognised its
    # resource; here the secondary profile did
    assert rows(
        con,
        "SELECT resources, resources_recognised_otherwise FROM core.unmapped_codes "
        "WHERE code = '94225005'",
    ) == [(1, 1)]


def test_rising_ca125_after_randomisation_is_a_gcig_progression_event(build) -> None:
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1", start="2024-03-01")],
            "Observation": [
                ca125("base", "p1", 300, "U/mL", day="2024-02-20T09:00:00Z"),
                ca125("low", "p1", 20, "U/mL", day="2024-05-01T09:00:00Z"),
                ca125("up1", "p1", 75, "U/mL", day="2024-09-01T09:00:00Z"),
                ca125("up2", "p1", 90, "U/mL", day="2024-09-10T09:00:00Z"),
            ],
        }
    )
    assert rows(
        con, "SELECT progressed_on::VARCHAR, basis, source_id FROM core.progression_events"
    ) == [("2024-09-01", "gcig", "up1")]


def test_ages_from_partial_birth_dates_and_without_consent(build) -> None:
    """Rule book §1 "Dates" and §6 IN04: the age is taken on the consent date, else on the
    randomisation date; a partial birth date gives the range of ages its days allow."""
    con = build(
        {
            "Patient": [
                patient("p1", birth="1960-05"),  # every day of May 1960: 63 on 2024-02-20
                patient("p2", birth="2005-02"),  # 18 or 19 on 2024-02-15
                patient("p3", birth="1970"),  # no consent: on the randomisation date 2024-03-01
            ],
            "ResearchSubject": [
                subject("r1", "p1", ident="RSC-T-0001", consent="c1"),
                subject("r2", "p2", ident="RSC-T-0002", arm=None, start=None, consent="c2"),
                subject("r3", "p3", ident="RSC-T-0003"),
            ],
            "Consent": [consent("c1", "p1"), consent("c2", "p2", day="2024-02-15")],
        }
    )
    assert rows(
        con,
        "SELECT usubjid, age_at_consent, age_min, age_max, age_on::VARCHAR, age_basis, birth_year "
        "FROM core.subjects ORDER BY 1",
    ) == [
        ("RESCUE-T-0001", 63, 63, 63, "2024-02-20", "consent", 1960),
        ("RESCUE-T-0002", None, 18, 19, "2024-02-15", "consent", 2005),
        ("RESCUE-T-0003", None, 53, 54, "2024-03-01", "randomisation", 1970),
    ]


def test_only_final_amended_or_corrected_observations_count_and_the_rest_are_counted(
    build,
) -> None:
    """Rule book §1: Observations count when final, amended or corrected."""
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "Observation": [
                ca125("o1", "p1", 40.0, "U/mL", status="final"),
                ca125("o2", "p1", 41.0, "U/mL", status="amended"),
                ca125("o3", "p1", 42.0, "U/mL", status="corrected"),
                ca125("o4", "p1", 43.0, "U/mL", status="preliminary"),
                ca125("o5", "p1", 44.0, "U/mL", status="cancelled"),
            ],
        }
    )
    assert rows(con, "SELECT source_id FROM core.ca125_measurements ORDER BY 1") == [
        ("o1",),
        ("o2",),
        ("o3",),
    ]
    assert rows(con, "SELECT reason, resources FROM core.excluded_resources ORDER BY 1") == [
        ("cancelled", 1),
        ("preliminary", 1),
    ]
