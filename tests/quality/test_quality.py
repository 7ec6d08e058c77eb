"""Great Expectations suites over real tables, and the gate they put before publishing."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from rescue_pipeline.quality import suites as suites_module
from rescue_pipeline.quality.gate import PublishRefused, refusal, run_quality
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
    future = sum(1 for f in truth["faults"] if f["kind"] == "future_date")
    assert warned_rows("CA-125 results and tumour assessments are not dated after") == future > 0
    deviations = sum(1 for s in truth["subjects"] if s["randomised"] and s["eligible"] != "yes")
    assert warned_rows("Randomised subjects are eligible") == deviations > 0
    known = ("CA-125 units", "CA-125 results", "Randomised subjects are eligible")
    assert all(c.description.startswith(known) for c in result.warnings)
    with work_db(config, read_only=True) as con:
        rows = con.execute(
            "SELECT count(*), count(DISTINCT site_id) FROM quality.results WHERE run_id = ?",
            [result.run_id],
        ).fetchall()
    assert rows == [(len(result.checks), 3)]  # every check, per site


@pytest.mark.parametrize(
    ("damage", "table", "expectation"),
    [
        (
            "INSERT INTO core.subjects SELECT * FROM core.subjects LIMIT 1",
            "core.subjects",
            "expect_column_values_to_be_unique",
        ),
        (
            "UPDATE core.subjects SET arm = 'C' WHERE arm = 'A' AND usubjid IN (SELECT min(usubjid) FROM core.subjects WHERE arm = 'A')",
            "core.subjects",
            "expect_column_values_to_be_in_set",
        ),
        (
            "UPDATE core.surgeries SET residual_disease = 'R9' WHERE source_id IN (SELECT min(source_id) FROM core.surgeries)",
            "core.surgeries",
            "expect_column_values_to_be_in_set",
        ),
        (
            "UPDATE raw.loads SET received = received + 1 WHERE resource_type = 'Patient'",
            "raw.loads",
            "expect_column_values_to_be_in_set",
        ),
        (
            "UPDATE raw.quarantine SET reason = 'looked odd' WHERE line_number IN (SELECT min(line_number) FROM raw.quarantine)",
            "raw.quarantine",
            "expect_column_values_to_be_in_set",
        ),
        (
            "UPDATE analysis.adtte SET CNSR = 2 WHERE USUBJID IN (SELECT min(USUBJID) FROM analysis.adtte)",
            "analysis.adtte",
            "expect_column_values_to_be_in_set",
        ),
        (
            "UPDATE analysis.adtte SET AVAL = 0 WHERE USUBJID IN (SELECT min(USUBJID) FROM analysis.adtte)",
            "analysis.adtte",
            "expect_column_values_to_be_between",
        ),
        (
            "INSERT INTO analysis.eligibility SELECT * FROM analysis.eligibility LIMIT 1",
            "analysis.eligibility",
            "expect_column_values_to_be_unique",
        ),
        (
            "DELETE FROM raw.fhir_resource_versions WHERE resource_type = 'Observation' AND resource_id IN (SELECT min(source_id) FROM core.ca125_measurements)",
            "core.*",
            "expect_column_values_to_be_in_set",
        ),
        (
            "UPDATE core.subjects SET died_on = randomised_on - 5 WHERE usubjid IN (SELECT min(usubjid) FROM core.subjects WHERE randomised_on IS NOT NULL)",
            "core.subjects",
            "expect_column_values_to_be_in_set",
        ),
        (
            "DELETE FROM analysis.adtte WHERE PARAMCD = 'PFS' AND USUBJID IN (SELECT min(USUBJID) FROM analysis.adtte)",
            "analysis.adsl",
            "expect_column_values_to_be_in_set",
        ),
    ],
)
def test_each_critical_check_fails_on_its_fault_and_refuses_the_publish(
    config, damage: str, table: str, expectation: str
) -> None:
    publish_warehouse(config)
    published = config.warehouse.read_bytes()
    with work_db(config) as con:
        con.execute(damage)
        result = run_quality(con, config, today=TODAY)
    failed = [(c.table_name, c.expectation) for c in result.critical_failures]
    assert (table, expectation) in failed
    reason = refusal(result)
    assert reason is not None and reason.startswith("publish refused:") and table in reason
    with pytest.raises(PublishRefused):
        publish_warehouse(config, result)
    assert config.warehouse.read_bytes() == published  # the published warehouse is untouched
    for c in result.critical_failures:
        assert c.unexpected_count and c.sample_keys  # how many rows, and which (keys only)


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
                        "type": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": "no_such_column"},
                        "meta": {"severity": "critical"},
                    }
                ],
            }
        )
    )
    monkeypatch.setenv(suites_module.EXPECTATIONS_ENV, str(folder))
    with work_db(config) as con:
        result = run_quality(con, config, today=TODAY)
    assert result.checks and all(not c.success for c in result.checks)
    assert all("no_such_column" in (c.observed_value or "") for c in result.checks)
