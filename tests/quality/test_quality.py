"""Great Expectations suites over real tables, and the gate they put before publishing."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.quality import suites as suites_module
from rescue_pipeline.quality.gate import PublishRefused, held_sites, refusal, run_quality
from rescue_pipeline.report.render import write_report
from rescue_pipeline.site_load import publish_warehouse, work_db
from tests.cohort import TODAY, build_cohort


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    return build_cohort(tmp_path_factory.mktemp("quality"), patients=150, seed=17, fault_rate=0.05)


@pytest.fixture
def config(built, tmp_path: Path):
    """A private copy of the built cohort's warehouse folder, free to damage."""
    source, _truth = built
    shutil.copytree(source.work_db.parent, tmp_path / "wh")
    return replace(source, warehouse=tmp_path / "wh" / "rescue.duckdb")


def test_the_synthetic_cohort_passes_every_critical_check_and_warns_only_of_its_faults(
    config, built
) -> None:
    _source, truth = built
    with work_db(config) as con:
        result = run_quality(con, config, today=TODAY)
    assert result.critical_failures == []

    def warned_rows(description_start: str) -> int:
        return sum(
            c.unexpected_count or 0
            for c in result.warnings
            if c.description.startswith(description_start)
        )

    unconvertible = sum(1 for f in truth["faults"] if f["kind"] == "unconvertible_unit")
    assert warned_rows("CA-125 units convert") == unconvertible > 0
    # future-dated results of trial subjects: a patient never screened has no core rows
    subjects = {(s["site_id"], s["patient_id"]) for s in truth["subjects"]}
    with work_db(config, read_only=True) as con:
        owner = dict(
            con.execute(
                "SELECT site_id || '/' || resource_id, "
                "replace(payload->>'$.subject.reference', 'Patient/', '') "
                "FROM raw.fhir_resources WHERE resource_type = 'Observation'"
            ).fetchall()
        )
    future = sum(
        1
        for f in truth["faults"]
        if f["kind"] == "future_date"
        and (f["site_id"], owner.get(f"{f['site_id']}/{f['resource_id']}")) in subjects
    )
    assert warned_rows("CA-125 results and tumour assessments are not dated after") == future > 0
    deviations = sum(1 for s in truth["subjects"] if s["randomised"] and s["eligible"] != "yes")
    assert warned_rows("Randomised subjects are eligible") == deviations > 0
    # a randomised subject whose site sent no Consent: a cross-check to review, not an error
    no_transfer = sum(
        1 for s in truth["subjects"] if s["randomised"] and s["consent_data_transfer"] is not True
    )
    assert warned_rows("Randomised subjects consented to data transfer") == no_transfer
    known = (
        "CA-125 units",
        "CA-125 results",
        "Randomised subjects are eligible",
        "Randomised subjects consented to data transfer",
    )
    assert all(c.description.startswith(known) for c in result.warnings)
    with work_db(config, read_only=True) as con:
        rows = con.execute(
            "SELECT count(*), count(DISTINCT site_id) FROM quality.results WHERE run_id = ?",
            [result.run_id],
        ).fetchall()
    assert rows == [(len(result.checks), 3)]  # every check, per site
    with work_db(config, read_only=True) as con:
        findings = dict(
            con.execute("SELECT severity, count(*) FROM quality.findings GROUP BY 1").fetchall()
        )
        quarantined = con.execute("SELECT count(*) FROM raw.quarantine").fetchall()[0][0]
        history = con.execute(
            "SELECT sum(received), sum(quarantined) FROM quality.load_history"
        ).fetchall()[0]
        loads = con.execute(
            "SELECT sum(received), sum(quarantined) FROM (SELECT received, quarantined FROM "
            "raw.loads UNION ALL SELECT received, quarantined FROM raw.deletion_loads)"
        ).fetchall()[0]  # the history keeps deletion files' loads too
    # every failing row is a data query; every quarantined line is one too
    assert findings == {
        "warning": sum(c.unexpected_count or 0 for c in result.warnings),
        "quarantine": quarantined,
    }
    assert quarantined > 0 and history == loads


def _rows(con, table: str, site: str) -> list[tuple]:
    """A site's rows of a published table, sorted (ADTTE's site comes from ADSL)."""
    where = (
        "USUBJID IN (SELECT USUBJID FROM analysis.adsl WHERE SITEID = ?)"
        if table == "analysis.adtte"
        else "site_id = ?"
    )
    return sorted(con.execute(f"SELECT * FROM {table} WHERE {where}", [site]).fetchall(), key=repr)


SITE_TABLES = ("core.subjects", "core.surgeries", "analysis.adtte", "analysis.eligibility")


FIRST = "(SELECT min(usubjid) FROM core.subjects WHERE randomised_on IS NOT NULL)"
# One hand-made fault per critical expectation (named by its description), each on one record.
FAULTS = {
    "One row per randomised subject and parameter.":
        "INSERT INTO analysis.adtte SELECT * FROM analysis.adtte LIMIT 1",
    "AVAL is at least 1 day.":
        "UPDATE analysis.adtte SET AVAL = 0 WHERE USUBJID IN (SELECT min(USUBJID) FROM analysis.adtte)",
    "CNSR is 0 (event) or 1 (censored).":
        "UPDATE analysis.adtte SET CNSR = 2 WHERE USUBJID IN (SELECT min(USUBJID) FROM analysis.adtte)",
    "ADT lies between STARTDT and the data cut-off.":
        "UPDATE analysis.adtte SET ADT = STARTDT - 3 WHERE USUBJID IN (SELECT min(USUBJID) FROM analysis.adtte)",
    "One PFS row per randomised subject, none for the others.":
        "DELETE FROM analysis.adtte WHERE PARAMCD = 'PFS' AND USUBJID IN (SELECT min(USUBJID) FROM analysis.adtte)",
    "Exactly one row per subject and criterion.":
        "INSERT INTO analysis.eligibility SELECT * FROM analysis.eligibility LIMIT 1",
    "Status is met, not_met or unknown.":
        "UPDATE analysis.eligibility SET status = 'maybe' WHERE usubjid IN (SELECT min(usubjid) FROM analysis.eligibility) AND criterion = 'IN01'",
    "Birth comes before diagnosis.":
        "UPDATE core.subjects SET birth_year = 2090 WHERE usubjid IN (SELECT min(usubjid) FROM core.diagnoses)",
    "Diagnosis comes no later than the first recurrence.":
        "UPDATE core.diagnoses SET diagnosed_on = DATE '2030-01-01' WHERE usubjid IN (SELECT min(usubjid) FROM core.recurrences)",
    "Recurrences come no later than randomisation.":
        "UPDATE core.recurrences SET recurred_on = DATE '2030-01-01' WHERE usubjid IN (SELECT min(usubjid) FROM core.recurrences WHERE usubjid IN (SELECT usubjid FROM core.subjects WHERE randomised_on IS NOT NULL))",
    "Progression comes after randomisation.":
        "UPDATE core.progression_events SET progressed_on = DATE '1990-01-01' WHERE usubjid IN (SELECT min(usubjid) FROM core.progression_events)",
    "Death comes no earlier than randomisation.":
        f"UPDATE core.subjects SET died_on = randomised_on - 5 WHERE usubjid IN {FIRST}",
    "Every subject has a pseudonymous id.":
        f"ALTER TABLE core.subjects ALTER COLUMN usubjid DROP NOT NULL; UPDATE core.subjects SET usubjid = NULL WHERE usubjid IN {FIRST}",
    "One row per subject.":
        "INSERT INTO core.subjects SELECT * FROM core.subjects LIMIT 1",
    "Arm is A, B or not randomised.":
        "UPDATE core.subjects SET arm = 'C' WHERE arm = 'A' AND usubjid IN (SELECT min(usubjid) FROM core.subjects WHERE arm = 'A')",
    "Residual disease is R0, R1, R2 or not recorded.":
        "UPDATE core.surgeries SET residual_disease = 'R9' WHERE source_id IN (SELECT min(source_id) FROM core.surgeries)",
    "Surgery type is primary, interval or secondary.":
        "UPDATE core.surgeries SET surgery_type = 'cosmetic' WHERE source_id IN (SELECT min(source_id) FROM core.surgeries)",
    "Every core row points to a resource in the raw layer.":
        "DELETE FROM raw.fhir_resource_versions WHERE resource_type = 'Observation' AND resource_id IN (SELECT min(source_id) FROM core.ca125_measurements)",
    # the raw checks look at what landed since the previous check: the faults land now
    "Each distinct version is stored once per site (versions landed since the previous check, against all).":
        "CREATE OR REPLACE TABLE raw.fhir_resource_versions AS SELECT * FROM raw.fhir_resource_versions UNION ALL (SELECT * REPLACE (now() AS received_at) FROM raw.fhir_resource_versions LIMIT 1)",
    "Each payload's sha256 matches its canonical JSON (versions landed since the previous check).":
        "CREATE OR REPLACE TABLE raw.fhir_resource_versions AS SELECT * REPLACE (CASE WHEN row_number() OVER () = 1 THEN repeat('0', 64) ELSE payload_sha256 END AS payload_sha256, CASE WHEN row_number() OVER () = 1 THEN now() ELSE received_at END AS received_at) FROM raw.fhir_resource_versions",
    "Every line received was either accepted or quarantined (received = accepted + quarantined).":
        "UPDATE raw.loads SET received = received + 1 WHERE resource_type = 'Patient'",
    "Every current resource is used by core or counted with its reason (current = used + excluded, per site and type).":
        "UPDATE core.resource_accounting SET resources = resources - 1 WHERE reason = 'used' AND resource_type = 'Observation' AND site_id IN (SELECT min(site_id) FROM core.resource_accounting)",
    "Quarantine reasons come from the known list.":
        "UPDATE raw.quarantine SET reason = 'looked odd' WHERE line_number IN (SELECT min(line_number) FROM raw.quarantine)",
}  # fmt: skip


def test_every_critical_expectation_has_a_fault_here() -> None:
    critical = {
        e["meta"]["description"]
        for suite in suites_module.load_suites()
        for e in suite.expectations
        if e["meta"].get("severity") == "critical"
    }
    assert critical == set(FAULTS)


@pytest.mark.parametrize(("description", "damage"), sorted(FAULTS.items()))
def test_each_critical_check_fails_on_its_fault_and_holds_that_site_back(
    config, description: str, damage: str, tmp_path: Path
) -> None:
    publish_warehouse(config)
    before = tmp_path / "before.duckdb"
    shutil.copy(config.warehouse, before)
    with work_db(config) as con:
        con.execute(damage)
        result = run_quality(con, config, today=TODAY)
    failing = [c for c in result.critical_failures if c.description == description]
    assert failing and sum(c.unexpected_count or 0 for c in failing) >= 1
    table = failing[0].table_name
    for c in result.critical_failures:
        assert c.unexpected_count and c.sample_keys  # how many rows, and which (keys only)
    assert refusal(result) is None  # confined to sites: the others are published
    held = held_sites(result)
    assert set(held) == {c.site_id for c in result.critical_failures}
    assert all(table in reason or table == "core.*" for reason in held.values())
    published = publish_warehouse(config, result)
    assert published.held == held and all(published.held_since[s] for s in held)
    sites = {s.id for s in config.sites}
    with (
        duckdb.connect(str(config.warehouse), read_only=True) as new,
        duckdb.connect(str(before), read_only=True) as old,
        work_db(config, read_only=True) as work,
    ):
        for site in sites:
            source = old if site in held else work
            for t in SITE_TABLES:
                assert _rows(new, t, site) == _rows(source, t, site), (site, t)
        log = new.execute(
            "SELECT site_id, status, reason IS NOT NULL FROM quality.publications "
            "WHERE published_at = (SELECT max(published_at) FROM quality.publications)"
        ).fetchall()
        assert sorted(log) == sorted(
            (s, "held" if s in held else "published", s in held) for s in sites
        )
        assert new.execute(  # this run's findings are published, the held site's included
            "SELECT count(DISTINCT site_id) FROM quality.findings WHERE severity = 'critical'"
        ).fetchall() == [(len(held),)]


def test_a_held_site_that_never_passed_has_no_data_published(config, tmp_path: Path) -> None:
    with work_db(config) as con:
        con.execute("UPDATE core.subjects SET arm = 'C' WHERE site_id = 'site-b' AND arm = 'A'")
        result = run_quality(con, config, today=TODAY)
    assert set(held_sites(result)) == {"site-b"}
    published = publish_warehouse(config, result)  # the first publish: nothing to keep
    assert published.held_since == {"site-b": None}
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        sites = con.execute("SELECT DISTINCT site_id FROM core.subjects ORDER BY 1").fetchall()
        assert sites == [("site-a",), ("site-c",)]
        assert con.execute(
            "SELECT status, data_as_of FROM quality.publications WHERE site_id = 'site-b'"
        ).fetchall() == [("held", None)]
    # the sponsors see it: the site is held back, and why
    files = write_report(config.warehouse, tmp_path / "report", study_id="RESCUE",
                         site_ids=[s.id for s in config.sites])  # fmt: skip
    overview = (files.sponsors / "index.html").read_text()
    assert (
        '<tr class="held">\n<td><a href="site-site-b.html">site-b</a></td>\n<td>held back</td>'
        in overview
    )
    page = (files.sponsors / "site-site-b.html").read_text()
    assert (
        "held back: 1 critical check(s) failed: core.subjects expect_column_values_to_be_in_set"
        in page
    )


def test_a_critical_failure_not_confined_to_a_site_refuses_the_whole_publish(config) -> None:
    publish_warehouse(config)
    published = config.warehouse.read_bytes()
    with work_db(config) as con:
        con.execute("DROP TABLE analysis.adtte")  # its suite's query fails: no site to blame
        result = run_quality(con, config, today=TODAY)
    global_failures = [c for c in result.critical_failures if c.site_id is None]
    assert global_failures and all("adtte" in (c.observed_value or "") for c in global_failures)
    reason = refusal(result)
    assert reason is not None and reason.startswith("publish refused:")
    assert "analysis.adtte" in reason and "all sites" in reason
    with pytest.raises(PublishRefused):
        publish_warehouse(config, result)
    assert config.warehouse.read_bytes() == published  # the published warehouse is untouched


def test_a_check_that_raises_is_a_failure_with_the_error_shown(
    config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "expectations"
    folder.mkdir()
    (folder / "broken.json").write_text(
        json.dumps(
            {
                "name": "broken",
                "meta": {
                    "layer": "core",
                    "table": "core.subjects",
                    "query": "SELECT site_id, usubjid AS key FROM core.subjects",
                    "key": "key",
                },
                "expectations": [
                    {
                        "id": "no_such_column_filled",
                        "type": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": "no_such_column"},
                        "meta": {"severity": "critical"},
                    }
                ],
            }
        )
    )
    monkeypatch.setattr(suites_module, "suites_folder", lambda: folder)
    with work_db(config) as con:
        result = run_quality(con, config, today=TODAY)
    assert result.checks and all(not c.success for c in result.checks)
    assert all("no_such_column" in (c.observed_value or "") for c in result.checks)


def test_published_findings_of_quarantined_lines_quote_no_id_or_value(config) -> None:
    with work_db(config) as con:
        run_quality(con, config, today=TODAY)
        rows = con.execute(
            "SELECT q.resource_id, q.raw_bytes, f.what_is_wrong "
            "FROM quality.findings f JOIN raw.quarantine q "
            "  ON f.record_key = q.source || ':' || q.line_number AND f.site_id = q.site_id "
            "WHERE f.table_name = 'raw.quarantine'"
        ).fetchall()
    assert len(rows) > 5
    with_id = [(rid, text) for rid, _raw, text in rows if rid]
    assert with_id  # lines with a readable id are among them
    assert not [text for rid, text in with_id if rid in text]


def test_every_result_names_its_check_by_id_and_the_suites_it_was_checked_by(config) -> None:
    ids = {e["id"] for suite in suites_module.load_suites() for e in suite.expectations}
    with work_db(config) as con:
        result = run_quality(con, config, today=TODAY)
        stored = con.execute(
            "SELECT DISTINCT check_id, suites_sha256 FROM quality.results WHERE run_id = ?",
            [result.run_id],
        ).fetchall()
        findings = con.execute(
            "SELECT DISTINCT check_id FROM quality.findings WHERE table_name <> 'raw.quarantine'"
        ).fetchall()
    assert {c for c, _ in stored} == ids  # every check, by its id
    assert {d for _, d in stored} == {suites_module.suites_sha256()}
    assert findings and {f for (f,) in findings} <= ids


@pytest.mark.integration
def test_the_quality_worker_ends_before_the_results_are_written(
    config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 100,000 patients the worker holds hundreds of MB that the writes after the checks
    (results, findings, completeness, KRIs) would otherwise run beside."""
    from rescue_pipeline.quality import gate
    from rescue_pipeline.quality.suites import worker

    worker.start()
    checked_by = worker._WORKER[0].process
    alive_at_first_write: list[bool] = []
    insert_columns = gate.insert_columns

    def spy(*args, **kwargs):
        alive_at_first_write.append(checked_by.is_alive())
        return insert_columns(*args, **kwargs)

    monkeypatch.setattr(gate, "insert_columns", spy)
    try:
        with work_db(config) as con:
            result = run_quality(con, config, today=TODAY, stop_worker=True)
    finally:
        worker.stop()
    assert result.checks and alive_at_first_write[:1] == [False]


def test_duckdb_leaves_the_quality_worker_memory_while_the_suites_run(
    config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker (Great Expectations and the frames in flight) runs beside DuckDB until every
    result is in; then the writes have DuckDB's whole limit again."""
    from rescue_pipeline.quality import gate
    from tests.warehouse.test_memory_limits import shown

    def limit(con) -> str:
        ((value,),) = con.execute("SELECT current_setting('memory_limit')").fetchall()
        return str(value)

    seen: dict[str, str] = {}
    run_suites, insert_columns = gate.run_suites, gate.insert_columns

    def suites_spy(con, *args, **kwargs):
        seen["suites"] = limit(con)
        return run_suites(con, *args, **kwargs)

    def writes_spy(con, *args, **kwargs):
        seen.setdefault("writes", limit(con))
        return insert_columns(con, *args, **kwargs)

    monkeypatch.setattr(gate, "run_suites", suites_spy)
    monkeypatch.setattr(gate, "insert_columns", writes_spy)
    config = replace(config, duckdb=replace(config.duckdb, memory_limit="2GiB"))
    with work_db(config) as con:
        run_quality(con, config, today=TODAY)
    assert seen == {"suites": shown(2048 - 512), "writes": shown(2048)}


def test_the_raw_checks_leave_versions_checked_by_an_earlier_run_alone(config) -> None:
    """Each version is hashed once, in the first quality run after it landed: a nightly run
    does not re-hash millions of stored payloads (DuckDB checksums every block it reads)."""

    def raw_failures(result) -> list:
        return [c for c in result.checks if c.layer == "raw" and not c.success]

    tamper_first = (
        "UPDATE raw.fhir_resource_versions SET payload_sha256 = repeat('0', 64) "
        "WHERE arrival = (SELECT min(arrival) FROM raw.fhir_resource_versions)"
    )
    copy_first = (
        "INSERT INTO raw.fhir_resource_versions SELECT * FROM raw.fhir_resource_versions "
        "WHERE arrival = (SELECT max(arrival) FROM raw.fhir_resource_versions)"
    )
    with work_db(config) as con:
        assert not raw_failures(run_quality(con, config, today=TODAY))
        con.execute(tamper_first)  # a version checked by the run above, and
        con.execute(copy_first)  # a second copy that arrived with it (as old as it)
        assert not raw_failures(run_quality(con, config, today=TODAY))
        # the first run would have seen both
        con.execute("DELETE FROM quality.results")
        failing = {c.check_id for c in raw_failures(run_quality(con, config, today=TODAY))}
    assert failing == {"raw_version_stored_once", "raw_payload_hash_matches"}


def test_a_raw_finding_is_found_again_by_every_run_until_it_is_put_right(config) -> None:
    """Not only by the run that found it: the next night's run would otherwise count that
    version as checked, and publish the held site."""
    with work_db(config) as con:
        assert run_quality(con, config, today=TODAY).critical_failures == []
        time.sleep(1.1)  # runs are stamped to the second: the copy lands after the first
        con.execute(
            "INSERT INTO raw.fhir_resource_versions SELECT * REPLACE (now() AS received_at) "
            "FROM raw.fhir_resource_versions WHERE arrival = "
            "(SELECT min(arrival) FROM raw.fhir_resource_versions)"
        )
        time.sleep(1.1)  # and before the next
        for _night in range(2):
            failing = {c.check_id for c in run_quality(con, config, today=TODAY).critical_failures}
            assert failing == {"raw_version_stored_once"}
        con.execute(  # the site's correction: the copy goes
            "DELETE FROM raw.fhir_resource_versions WHERE received_at = "
            "(SELECT max(received_at) FROM raw.fhir_resource_versions)"
        )
        assert run_quality(con, config, today=TODAY).critical_failures == []
