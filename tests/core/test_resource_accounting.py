"""Nothing silent: every current resource is used by core or counted with its reason."""

from __future__ import annotations

from tests.core.conftest import ca125, consent, dose, patient, subject


def accounting(con) -> dict[tuple[str, str], int]:
    return {
        (t, r): n
        for t, r, n in con.execute(
            "SELECT resource_type, reason, resources FROM core.resource_accounting"
        ).fetchall()
    }


def test_each_resource_is_used_or_counted_with_its_first_reason(build) -> None:
    other = [{"system": "https://site-t.example/lab", "code": "HE4"}]
    con = build(
        {
            "Patient": [patient("p1"), patient("p9")],  # p9 is no trial subject
            "ResearchSubject": [subject("r1", "p1", consent="c1")],
            "Consent": [consent("c1", "p1"), consent("c9", "p9")],
            "Observation": [
                ca125("o1", "p1", 40.0, "U/mL"),
                ca125("o2", "p1", 41.0, "U/mL", status="entered-in-error"),
                ca125("o3", "p1", 70, "pmol/L", coding=other),
                ca125("o9", "p9", 40.0, "U/mL"),
            ],
            "MedicationAdministration": [dose("m1", "p1", "40048", "2023-01-10")],
            "Medication": [
                {
                    "resourceType": "Medication",
                    "id": "med-unused",
                    "code": {
                        "coding": [
                            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "2555"}
                        ]
                    },
                }
            ],
            "Encounter": [
                {"resourceType": "Encounter", "id": "e1", "status": "finished",
                 "class": {"code": "AMB"}, "subject": {"reference": "Patient/p1"}}
            ],
        }
    )  # fmt: skip
    assert accounting(con) == {
        ("Patient", "used"): 1,
        ("Patient", "not_a_trial_subject"): 1,
        ("ResearchSubject", "used"): 1,
        ("Consent", "used"): 1,
        ("Consent", "not_a_trial_subject"): 1,
        ("Observation", "used"): 1,
        ("Observation", "entered-in-error"): 1,
        ("Observation", "unmapped_code"): 1,
        ("Observation", "not_a_trial_subject"): 1,
        ("MedicationAdministration", "used"): 1,
        ("Medication", "medication_not_given"): 1,
        ("Encounter", "type_not_read"): 1,
    }
    # per site and type the rows add up to raw's own count
    assert con.execute("SELECT count(*) FROM raw.fhir_resources").fetchall()[0][0] == sum(
        accounting(con).values()
    )


def test_a_withdrawn_subject_is_counted_not_lost(build) -> None:
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1", consent="c1")],
            "Consent": [consent("c1", "p1", status="inactive")],
            "Observation": [ca125("o1", "p1", 40.0, "U/mL")],
        }
    )
    got = accounting(con)
    assert got[("ResearchSubject", "consent_withdrawn")] == 1
    assert got[("Observation", "not_a_trial_subject")] == 1  # she left core with her records


def test_a_result_dated_to_the_month_is_used_and_one_with_no_date_is_counted(build) -> None:
    month = ca125("o2", "p1", 41.0, "U/mL")
    month["effectiveDateTime"] = "2024-03"  # partial: the screening rules try every day of it
    undated = ca125("o3", "p1", 42.0, "U/mL")
    del undated["effectiveDateTime"]
    con = build(
        {
            "Patient": [patient("p1")],
            "ResearchSubject": [subject("r1", "p1")],
            "Observation": [ca125("o1", "p1", 40.0, "U/mL"), month, undated],
        }
    )
    got = accounting(con)
    assert (got[("Observation", "used")], got[("Observation", "no_full_date")]) == (2, 1)
    assert con.execute(
        "SELECT kind, earliest::VARCHAR, latest::VARCHAR, precision, value_u_per_ml, source_id "
        "FROM core.partial_dates"
    ).fetchall() == [("ca125", "2024-03-01", "2024-03-31", "month", 41.0, "o2")]
