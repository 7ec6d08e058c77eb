"""A resource deleted at the site leaves core and analysis on the next build and is counted in
core.excluded_resources; re-created, it comes back. Real DuckDB files, an NDJSON folder site
whose deleted/ sub-folder holds the deletion Bundles, as a Bulk export written to disk does."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from rescue_pipeline.analysis.build import derive_analysis
from rescue_pipeline.config import Config
from rescue_pipeline.core.build import build_core
from rescue_pipeline.quality.gate import run_quality
from rescue_pipeline.report.render import write_report
from rescue_pipeline.site_load import load_site, publish_warehouse, work_db
from rescue_pipeline.status import site_statuses
from tests.cohort import KEY, TODAY, build_cohort


def rebuild(config: Config) -> None:
    site = config.site("site-a")
    load_site(config, site)
    with work_db(config) as con:
        build_core(con, config, key=KEY, today=TODAY)
        derive_analysis(con, config, today=TODAY)
        publish_warehouse(config, run_quality(con, config, today=TODAY))


def present(con: duckdb.DuckDBPyConnection, usubjid: str) -> dict[str, int]:
    return {
        table: con.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?", [usubjid]).fetchall()[
            0
        ][0]
        for table, column in [
            ("core.subjects", "usubjid"), ("analysis.eligibility_summary", "usubjid"),
            ("analysis.adsl", "USUBJID"), ("analysis.adtte", "USUBJID"),
        ]
    }  # fmt: skip


def test_a_deleted_subject_leaves_core_and_analysis_is_counted_and_comes_back_recreated(
    tmp_path: Path,
) -> None:
    config, _truth = build_cohort(tmp_path / "c", patients=24, sites=1, seed=7)
    with work_db(config, read_only=True) as con:
        usubjid, rs_id = con.execute(
            "SELECT usubjid, source_id FROM core.subjects WHERE randomised_on IS NOT NULL "
            "ORDER BY usubjid LIMIT 1"
        ).fetchall()[0]
        subjects = con.execute("SELECT count(*) FROM core.subjects").fetchall()[0][0]
        assert present(con, usubjid) == {
            "core.subjects": 1, "analysis.eligibility_summary": 1, "analysis.adsl": 1,
            "analysis.adtte": 3,
        }  # fmt: skip
    folder = config.site("site-a").source.path  # type: ignore[union-attr]
    (folder / "deleted").mkdir()
    entry = {
        "request": {"method": "DELETE", "url": f"ResearchSubject/{rs_id}"},
        "response": {"status": "204", "lastModified": "2026-06-01T09:00:00Z"},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    (folder / "deleted" / "ResearchSubject-deleted.ndjson").write_text(json.dumps(bundle) + "\n")
    rebuild(config)
    with work_db(config, read_only=True) as con:
        assert present(con, usubjid) == dict.fromkeys(present(con, usubjid), 0)
        assert con.execute("SELECT count(*) FROM core.subjects").fetchall()[0][0] == subjects - 1
        assert con.execute(
            "SELECT site_id, resource_type, resources FROM core.excluded_resources "
            "WHERE reason = 'deleted'"
        ).fetchall() == [("site-a", "ResearchSubject", 1)]
        assert con.execute(  # nothing lost: her version stays in raw
            "SELECT count(*) FROM raw.fhir_resource_versions WHERE resource_id = ?", [rs_id]
        ).fetchall() == [(1,)]
        assert [s.deleted for s in site_statuses(con, config)] == [1]  # `rescue status`
    files = write_report(config.warehouse, tmp_path / "r", study_id="RESCUE", site_ids=["site-a"])
    page = (files.sponsors / "site-site-a.html").read_text()
    assert "<dt>Deleted at the site</dt><dd>1 resources (kept in raw" in page
    subject = next(
        r
        for r in map(json.loads, (folder / "ResearchSubject.ndjson").read_text().splitlines())
        if r["id"] == rs_id
    )
    recreated = {**subject, "meta": {"versionId": "3", "lastUpdated": "2026-06-10T09:00:00Z"}}
    with (folder / "ResearchSubject.ndjson").open("a") as handle:
        handle.write(json.dumps(recreated) + "\n")
    rebuild(config)
    with work_db(config, read_only=True) as con:
        assert present(con, usubjid)["core.subjects"] == 1
        assert present(con, usubjid)["analysis.adsl"] == 1
        assert con.execute(
            "SELECT count(*) FROM core.excluded_resources WHERE reason = 'deleted'"
        ).fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM raw.deletions").fetchall() == [(1,)]
        assert [s.deleted for s in site_statuses(con, config)] == [0]
