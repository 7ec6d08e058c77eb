"""A subject who withdraws her consent keeps her raw data (nothing lost) but leaves core,
analysis and the exports from that load on, and the sponsors' report counts her."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from rescue_pipeline.analysis.build import derive_analysis
from rescue_pipeline.analysis.exports import export
from rescue_pipeline.core.build import build_core
from rescue_pipeline.quality.gate import run_quality
from rescue_pipeline.report.render import write_report
from rescue_pipeline.site_load import load_site, publish_warehouse, work_db
from tests.cohort import KEY, TODAY, build_cohort


def test_a_withdrawn_subject_leaves_core_analysis_and_exports_but_stays_in_raw(
    tmp_path: Path,
) -> None:
    config, _truth = build_cohort(tmp_path / "c", patients=60, sites=2, seed=31)
    site = config.site("site-a")
    with work_db(config, read_only=True) as con:
        usubjid, rs_id = con.execute(
            "SELECT usubjid, source_id FROM core.subjects WHERE site_id = 'site-a' AND "
            "randomised_on IS NOT NULL AND consent_data_transfer ORDER BY usubjid LIMIT 1"
        ).fetchall()[0]
        counts = dict(
            con.execute(
                "SELECT 'subjects', count(*) FROM core.subjects UNION ALL "
                "SELECT 'adtte', count(*) FROM analysis.adtte"
            ).fetchall()
        )
    folder = site.source.path  # type: ignore[union-attr]
    subject = next(
        r
        for r in map(json.loads, (folder / "ResearchSubject.ndjson").read_text().splitlines())
        if r["id"] == rs_id
    )
    consent_id = subject["consent"]["reference"].split("/")[1]
    consent = next(
        c
        for c in map(json.loads, (folder / "Consent.ndjson").read_text().splitlines())
        if c.get("id") == consent_id
    )
    withdrawn = {
        **consent,
        "status": "inactive",  # FHIR R4: the consent is no longer in force
        "meta": {"versionId": "2", "lastUpdated": "2026-06-01T09:00:00Z"},
        "dateTime": "2026-06-01",
    }
    with (folder / "Consent.ndjson").open("a") as handle:
        handle.write(json.dumps(withdrawn) + "\n")
    load_site(config, site)
    with work_db(config) as con:
        build_core(con, config, key=KEY, today=TODAY)
        derive_analysis(con, config, today=TODAY)
        publish_warehouse(config, run_quality(con, config, today=TODAY))
        # nothing lost: both consent versions and all her resources are in raw
        assert con.execute(
            "SELECT count(*) FROM raw.fhir_resource_versions WHERE site_id = 'site-a' AND "
            "resource_type = 'Consent' AND resource_id = ?",
            [consent_id],
        ).fetchall() == [(2,)]
        assert con.execute(
            "SELECT count(*) FROM raw.fhir_resources WHERE resource_type = 'ResearchSubject' "
            "AND resource_id = ?",
            [rs_id],
        ).fetchall() == [(1,)]
        assert con.execute(
            "SELECT resources FROM core.excluded_resources WHERE reason = 'consent_withdrawn'"
        ).fetchall() == [(1,)]
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        for table, column in [
            ("core.subjects", "usubjid"), ("core.ca125_measurements", "usubjid"),
            ("core.regimens", "usubjid"), ("analysis.eligibility", "usubjid"),
            ("analysis.adsl", "USUBJID"), ("analysis.adtte", "USUBJID"),
        ]:  # fmt: skip
            found = con.execute(
                f"SELECT count(*) FROM {table} WHERE {column} = ?", [usubjid]
            ).fetchall()
            assert found == [(0,)], table
        assert con.execute("SELECT count(*) FROM core.subjects").fetchall()[0][0] == (
            counts["subjects"] - 1
        )
        result = export(con, study_id=config.study_id, fmt="parquet", out=tmp_path / "x")
    for path in result.files.values():
        if path.suffix == ".parquet":
            assert usubjid not in str(pq.read_table(path).to_pylist())
    files = write_report(config.warehouse, tmp_path / "r", study_id="RESCUE",
                         site_ids=[s.id for s in config.sites])  # fmt: skip
    assert (
        "<dt>Consent withdrawn</dt><dd>1 (kept in raw"
        in (files.sponsors / "site-site-a.html").read_text()
    )
