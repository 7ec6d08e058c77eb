"""OS and TFST censoring on a synthesised cohort, read independently of the rule's code: a
subject with no event is censored at her last contact inside the window, never at
randomisation when she was seen in it (followed past the window or not)."""

from __future__ import annotations

from pathlib import Path

from rescue_pipeline.site_load import work_db
from tests.cohort import build_cohort


def test_os_and_tfst_are_censored_at_the_last_contact_inside_the_window(tmp_path: Path) -> None:
    config, _ = build_cohort(tmp_path / "c", patients=200, seed=7)
    cutoff, window = config.analysis.data_cutoff, config.analysis.pfs_window_days
    with work_db(config) as con:
        rows = con.execute(
            """
            WITH contact AS (
                SELECT usubjid, assessed_on AS day FROM core.tumour_assessments
                UNION ALL SELECT usubjid, measured_on FROM core.ca125_measurements
                UNION ALL SELECT usubjid, started_on FROM core.drug_administrations
                UNION ALL SELECT usubjid, assessed_on FROM core.disease_statuses
            ), last_inside AS (
                SELECT c.usubjid, max(c.day) AS day FROM contact c
                JOIN core.subjects s USING (usubjid)
                WHERE c.day > s.randomised_on AND c.day <= $cutoff
                  AND c.day <= s.randomised_on + CAST($window AS INTEGER)
                GROUP BY 1
            )
            SELECT t.PARAMCD, t.USUBJID, t.ADT, t.STARTDT, l.day
            FROM analysis.adtte t LEFT JOIN last_inside l ON l.usubjid = t.USUBJID
            WHERE t.PARAMCD IN ('OS', 'TFST') AND t.CNSR = 1
            """,
            {"cutoff": cutoff, "window": window},
        ).fetchall()
    assert len(rows) > 50
    for paramcd, usubjid, adt, start, last in rows:
        assert adt == (last or start), (paramcd, usubjid)
    followed_past = [r for r in rows if r[4] is not None and (r[4] - r[3]).days > 600]
    assert followed_past  # the case that was censored at day 1 before: long follow-up
