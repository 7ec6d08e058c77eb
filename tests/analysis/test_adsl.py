"""ADSL's standard subject-level variables: sex coded, arm coded and decoded, death flagged,
the subject's id within the study, on worked examples and on a synthesised cohort."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescue_pipeline.analysis.build import ARM_TEXT, cdisc_sex, subject_id
from rescue_pipeline.site_load import work_db
from tests.cohort import build_cohort


@pytest.mark.parametrize(
    ("gender", "sex"),
    [
        ("female", "F"),
        ("male", "M"),
        ("Female ", "F"),
        ("other", "U"),
        ("unknown", "U"),
        (None, "U"),
    ],
)
def test_sex_is_coded_from_administrative_gender(gender: str | None, sex: str) -> None:
    assert cdisc_sex(gender) == sex


def test_subjid_is_usubjid_without_the_study_prefix() -> None:
    assert subject_id("RESCUE-A-0001") == "A-0001"
    assert subject_id("RESCUE-site-b-X0a1b2c3d4e") == "site-b-X0a1b2c3d4e"


def test_adsl_on_a_cohort_follows_core(tmp_path: Path) -> None:
    config, _ = build_cohort(tmp_path / "c", patients=120, seed=5)
    with work_db(config) as con:
        rows = con.execute(
            "SELECT a.USUBJID, a.SUBJID, a.SEX, a.ARMCD, a.ARM, a.ARMNRS, a.TRT01P, a.DTHFL, "
            "a.DTHDT, s.sex, s.arm, s.died_on FROM analysis.adsl a "
            "JOIN core.subjects s ON s.usubjid = a.USUBJID"
        ).fetchall()
    assert len(rows) > 100
    for usubjid, subjid, sex, armcd, arm, armnrs, trt01p, dthfl, dthdt, gender, a, died in rows:
        assert subjid == usubjid.removeprefix("RESCUE-")
        assert sex == cdisc_sex(gender)
        assert armcd == a and arm == trt01p == (ARM_TEXT[a] if a else None)
        assert armnrs == (None if a else "SCREEN FAILURE")
        assert (dthfl, dthdt) == (("Y", died) if died else (None, None))
    assert {r[3] for r in rows} == {"A", "B", None}  # both arms and screen failures occur


def test_actual_arm_safety_and_end_of_study_on_a_cohort(tmp_path: Path) -> None:
    """Read independently of the rule's code: the actual arm from the surgeries and doses after
    randomisation, SAFFL from it, EOSSTT from the status the site sent."""
    config, _ = build_cohort(tmp_path / "c", patients=200, seed=11)
    cutoff = config.analysis.data_cutoff
    with work_db(config) as con:
        rows = con.execute(
            """
            SELECT a.ARMCD, a.ACTARMCD, a.ACTARM, a.TRT01A, a.ARMNRS, a.SAFFL, a.EOSSTT,
                   s.subject_status, s.study_ended_on, s.died_on, s.randomised_on,
                   EXISTS (SELECT 1 FROM core.surgeries g WHERE g.usubjid = s.usubjid
                           AND g.surgery_type = 'secondary'
                           AND g.performed_on BETWEEN s.randomised_on AND $cutoff
                           AND g.performed_on < coalesce(pd.first_pd, DATE '9999-12-31')),
                   EXISTS (SELECT 1 FROM core.drug_administrations d WHERE d.usubjid = s.usubjid
                           AND d.kind = 'administration'
                           AND d.started_on BETWEEN s.randomised_on AND $cutoff
                           AND d.started_on < coalesce(pd.first_pd, DATE '9999-12-31'))
            FROM analysis.adsl a JOIN core.subjects s ON s.usubjid = a.USUBJID
            LEFT JOIN (SELECT t.usubjid, min(t.assessed_on) AS first_pd
                       FROM core.tumour_assessments t JOIN core.subjects r USING (usubjid)
                       WHERE t.response = 'PD' AND t.assessed_on > r.randomised_on
                       GROUP BY 1) pd ON pd.usubjid = s.usubjid
            """,
            {"cutoff": cutoff},
        ).fetchall()
    statuses = set()
    for armcd, actcd, actarm, trt01a, armnrs, saffl, eosstt, status, ended, died, rand, \
            operated, dosed in rows:  # fmt: skip
        expected = ("A" if operated else "B" if dosed else None) if armcd else None
        assert actcd == expected
        assert actarm == trt01a == (ARM_TEXT[actcd] if actcd else None)
        assert saffl == ("Y" if actcd else "N")
        assert armnrs == (None if actcd else "ASSIGNED, NOT TREATED" if armcd else "SCREEN FAILURE")
        if not armcd:
            assert eosstt is None
        elif status == "withdrawn" or (died and (died - rand).days <= 730):
            assert eosstt == "DISCONTINUED"
        elif status == "off-study" and ended and (ended - rand).days < 730:
            assert eosstt == "DISCONTINUED"
        elif status in ("on-study", "follow-up") and not died:
            assert eosstt == "ONGOING"
        elif status == "off-study" and ended and not died:
            assert eosstt == ("COMPLETED" if (ended - rand).days >= 730 else "DISCONTINUED")
        statuses.add(eosstt)
    assert {"A", "B"} <= {r[1] for r in rows}
    assert {"COMPLETED", "DISCONTINUED", "ONGOING", None} <= statuses
    with work_db(config) as con:
        crossovers = con.execute(
            "SELECT count(*) FROM analysis.adsl a JOIN core.surgeries g ON g.usubjid = a.USUBJID "
            "WHERE a.ARMCD = 'B' AND a.ACTARMCD = 'B' AND g.surgery_type = 'secondary' "
            "AND g.performed_on > a.RANDDT"
        ).fetchall()[0][0]
        left_early = con.execute(
            "SELECT count(*) FROM analysis.adsl a JOIN core.subjects s ON s.usubjid = a.USUBJID "
            "WHERE s.subject_status = 'off-study' AND s.study_ended_on < a.RANDDT + 730 "
            "AND a.EOSSTT = 'DISCONTINUED'"
        ).fetchall()[0][0]
    assert crossovers > 0  # operated after progression: still arm B's treatment
    assert left_early > 0


def test_race_comes_from_the_us_core_extension_where_a_site_sends_it(tmp_path: Path) -> None:
    """Site a's synthetic EHR sends US Core race (one or two OMB categories, or ASKU); the
    other sites send none, and their subjects have no RACE."""
    config, _ = build_cohort(tmp_path / "c", patients=150, seed=3)
    with work_db(config) as con:
        rows = con.execute(
            "SELECT a.SITEID, a.RACE, p.race_omb FROM analysis.adsl a "
            "JOIN core.subjects s ON s.usubjid = a.USUBJID "
            "JOIN core_stage.usubjids u ON u.usubjid = s.usubjid "
            "JOIN flat.research_subject r ON r.site_id = u.site_id AND r.id = u.research_subject_id "
            "JOIN flat.patient p ON p.site_id = r.site_id AND p.id = r.patient_id"
        ).fetchall()
    omb = {"1002-5": "AMERICAN INDIAN OR ALASKA NATIVE", "2028-9": "ASIAN",
           "2054-5": "BLACK OR AFRICAN AMERICAN",
           "2076-8": "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", "2106-3": "WHITE"}  # fmt: skip
    seen = set()
    for site, race, codes in rows:
        categories = {omb[c] for c in codes or [] if c in omb}
        expected = (
            "MULTIPLE" if len(categories) > 1 else categories.pop() if categories
            else "NOT REPORTED" if "ASKU" in (codes or []) else None
        )  # fmt: skip
        assert race == expected, (site, codes)
        if site != "site-a":
            assert race is None
        seen.add(race)
    assert {"MULTIPLE", "NOT REPORTED", "WHITE", None} <= seen
