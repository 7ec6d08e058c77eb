"""The whole synthetic cohort normalised: core equals the generator's ground truth, subject by
subject, and no direct identifier of the cohort appears anywhere in core."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from tests.cohort import build_cohort


@pytest.fixture(scope="module")
def cohort(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, Any], duckdb.DuckDBPyConnection]:
    out = tmp_path_factory.mktemp("core-cohort")
    config, truth = build_cohort(out, patients=400, seed=23, analysis=False)
    return out, truth, duckdb.connect(str(config.work_db), read_only=True)


def test_one_subject_row_per_trial_subject_with_the_truths_facts(cohort) -> None:
    _out, truth, con = cohort
    got = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT source_id, usubjid, arm, randomised_on::VARCHAR, consented_on::VARCHAR, "
            "consent_data_transfer, died_on::VARCHAR, age_at_consent, birth_year FROM core.subjects"
        ).fetchall()
    }
    assert len(got) == len(truth["subjects"])
    mismatches = []
    for s in truth["subjects"]:
        want = (
            s["subject_identifier"].replace("RSC-", "RESCUE-")
            if s["subject_identifier"]
            else got[s["research_subject_id"]][0],
            s["arm"],
            s["randomised_on"],
            s["consented_on"],
            s["consent_data_transfer"],
            s["died_on"],
            s["age_at_consent"],
            s["birth_year"],
        )
        if got.get(s["research_subject_id"]) != want:
            mismatches.append((s["scenario"], got.get(s["research_subject_id"]), want))
    assert mismatches == []


def test_recurrences_equal_the_ground_truth_subject_by_subject(cohort) -> None:
    _out, truth, con = cohort
    usubjid = dict(con.execute("SELECT source_id, usubjid FROM core.subjects").fetchall())
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for u, n, d in con.execute(
        "SELECT usubjid, number, recurred_on::VARCHAR FROM core.recurrences ORDER BY 1, 2"
    ).fetchall():
        found[u].append({"number": n, "date": d})
    mismatches = [
        (s["scenario"], found.get(usubjid[s["research_subject_id"]], []), s["recurrences"])
        for s in truth["subjects"]
        if found.get(usubjid[s["research_subject_id"]], []) != s["recurrences"]
    ]
    assert mismatches == []
    assert sum(len(s["recurrences"]) for s in truth["subjects"]) > len(truth["subjects"]) * 0.8


def test_histology_exclusions_match_ex02(cohort) -> None:
    _out, truth, con = cohort
    usubjid = dict(con.execute("SELECT source_id, usubjid FROM core.subjects").fetchall())
    excluded = {
        u
        for (u,) in con.execute(
            "SELECT usubjid FROM core.diagnoses WHERE behaviour <> 'invasive' OR histology_class <> 'epithelial'"
        ).fetchall()
    }
    for s in truth["subjects"]:
        assert (usubjid[s["research_subject_id"]] in excluded) == (
            s["eligibility"]["EX02"]["status"] == "met"
        ), s["scenario"]


def test_injected_faults_are_flagged_excluded_or_counted(cohort) -> None:
    _out, truth, con = cohort
    faults = defaultdict(list)
    for f in truth["faults"]:
        faults[f["kind"]].append(f)
    flagged = {
        (s, i)
        for s, i in con.execute(
            "SELECT site_id, source_id FROM core.ca125_measurements WHERE NOT unit_convertible"
        ).fetchall()
    }
    assert {(f["site_id"], f["resource_id"]) for f in faults["unconvertible_unit"]} == flagged
    everywhere = set()
    for table in (
        "ca125_measurements",
        "tumour_assessments",
        "disease_statuses",
        "progression_events",
    ):
        everywhere |= {
            (s, i)
            for s, i in con.execute(f"SELECT site_id, source_id FROM core.{table}").fetchall()
        }
    assert not {(f["site_id"], f["resource_id"]) for f in faults["entered_in_error"]} & everywhere
    excluded = sum(
        n
        for (n,) in con.execute(
            "SELECT resources FROM core.excluded_resources WHERE reason = 'entered-in-error'"
        ).fetchall()
    )
    assert excluded == len(faults["entered_in_error"])
    # resources the core layer could not use (codes beside a recognised one are counted apart)
    unmapped = sum(
        n
        for (n,) in con.execute(
            "SELECT resources - resources_recognised_otherwise FROM core.unmapped_codes"
        ).fetchall()
    )
    assert unmapped == len(faults["unmapped_code"])


def test_no_direct_identifier_of_the_cohort_reaches_core(cohort) -> None:
    out, _truth, con = cohort
    names, mrns, births = set(), set(), set()
    for site in out.iterdir():
        patients = site / "Patient.ndjson"
        if not patients.exists():
            continue
        for line in patients.read_bytes().splitlines():
            try:
                p = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            for n in p.get("name", []):
                names.update([n.get("family", ""), *n.get("given", [])])
            mrns.update(i["value"] for i in p.get("identifier", []))
            if isinstance(p.get("id"), str):  # a Patient id can be an MRN: it stays in raw
                mrns.add(p["id"])
            if len(p.get("birthDate") or "") >= 7:  # a year alone is birth_year, published
                births.add(p["birthDate"])
    needles = {x for x in names | mrns | births if len(x) >= 4}
    assert len(needles) > 100
    tables = [
        t
        for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'core'"
        ).fetchall()
    ]
    leaks = []
    for table in tables:
        for (text,) in con.execute(f"SELECT CAST(t AS VARCHAR) FROM core.{table} t").fetchall():
            leaks += [(table, n) for n in needles if n in text]
    assert leaks == []
    # the scan itself can find them: the raw layer has them all
    raw = "\n".join(
        t
        for (t,) in con.execute(
            "SELECT payload::VARCHAR FROM raw.fhir_resources WHERE resource_type = 'Patient'"
        ).fetchall()
    )
    assert all(n in raw for n in list(mrns)[:50] + list(births)[:50])
