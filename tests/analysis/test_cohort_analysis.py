"""The synthetic cohort through the whole derivation, compared subject by subject with the
generator's ground truth: every eligibility criterion, the summary, PFI, cycles, CA-125 response
and PFS (date, censoring and rule). Zero mismatches."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import duckdb
import pytest

from tests.cohort import build_cohort


@pytest.fixture(scope="module")
def cohort(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Any], duckdb.DuckDBPyConnection]:
    config, truth = build_cohort(tmp_path_factory.mktemp("analysis-cohort"), patients=600, seed=5)
    return truth, duckdb.connect(str(config.work_db), read_only=True)


def _usubjid(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT source_id, usubjid FROM core.subjects").fetchall())


def test_every_criterion_of_every_subject_equals_the_ground_truth(cohort) -> None:
    truth, con = cohort
    got: dict[str, dict[str, str]] = defaultdict(dict)
    for u, c, s in con.execute(
        "SELECT usubjid, criterion, status FROM analysis.eligibility"
    ).fetchall():
        got[u][c] = s
    ids = _usubjid(con)
    mismatches = [
        (
            s["scenario"],
            code,
            got[ids[s["research_subject_id"]]].get(code),
            want["status"],
            want["reason"],
        )
        for s in truth["subjects"]
        for code, want in s["eligibility"].items()
        if got[ids[s["research_subject_id"]]].get(code) != want["status"]
    ]
    assert mismatches == []
    assert con.execute("SELECT count(*) FROM analysis.eligibility").fetchall()[0][0] == 14 * len(
        truth["subjects"]
    )


def test_summary_pfi_cycles_and_ca125_response_equal_the_ground_truth(cohort) -> None:
    truth, con = cohort
    got = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT usubjid, eligible, pfi_days, post_recurrence_cycles, ca125_response, ca125_response_date::VARCHAR "
            "FROM analysis.eligibility_summary"
        ).fetchall()
    }
    ids = _usubjid(con)
    mismatches = []
    for s in truth["subjects"]:
        want = (
            s["eligible"],
            s["pfi_days"],
            s["post_recurrence_cycles"],
            s["ca125_response"],
            s["ca125_response_date"],
        )
        if got[ids[s["research_subject_id"]]] != want:
            mismatches.append((s["scenario"], got[ids[s["research_subject_id"]]], want))
    assert mismatches == []
    eligible = {e for (e, *_rest) in got.values()}
    assert eligible == {"yes", "no", "unknown"}


def test_pfs_of_every_randomised_subject_equals_the_ground_truth(cohort) -> None:
    truth, con = cohort
    got = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT USUBJID, STARTDT::VARCHAR, ADT::VARCHAR, AVAL, CNSR, RULE FROM analysis.adtte WHERE PARAMCD = 'PFS'"
        ).fetchall()
    }
    ids = _usubjid(con)
    randomised = [s for s in truth["subjects"] if s["pfs"]]
    mismatches = []
    for s in randomised:
        p = s["pfs"]
        want = (p["startdt"], p["adt"], p["aval"], p["cnsr"], p["rule"])
        if got.get(ids[s["research_subject_id"]]) != want:
            mismatches.append(
                (s["scenario"], got.get(ids[s["research_subject_id"]]), want, p["reason"])
            )
    assert mismatches == []
    assert len(got) == len(randomised)
    assert {r[4] for r in got.values()} == {2, 3, 4, 5}  # every censoring row is exercised


def test_adtte_is_well_formed(cohort) -> None:
    _truth, con = cohort
    bad = con.execute(
        """
        SELECT count(*) FROM analysis.adtte
        WHERE AVAL <> date_diff('day', STARTDT, ADT) + 1 OR AVAL < 1 OR CNSR NOT IN (0, 1)
           OR (CNSR = 0 AND EVNTDESC IS NULL) OR (CNSR = 1 AND CNSDTDSC IS NULL) OR (SRCID IS NULL AND SRCFTYP <> 'Patient')
        """
    ).fetchall()[0][0]
    assert bad == 0
    per = con.execute(
        "SELECT PARAMCD, count(*) FROM analysis.adtte GROUP BY 1 ORDER BY 1"
    ).fetchall()
    randomised = con.execute("SELECT count(*) FROM analysis.adsl WHERE RANDFL = 'Y'").fetchall()[0][
        0
    ]
    assert per == [("OS", randomised), ("PFS", randomised), ("TFST", randomised)]
