"""The synthetic cohort, faults and all, landed for real: what the raw layer holds must equal
what the generator's ground truth says it sent, line by line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rescue_pipeline.config import load_config
from rescue_pipeline.raw.validation import validate_pending
from rescue_pipeline.site_load import load_site, work_db
from rescue_pipeline.synth import generate


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("cohort")
    generate(out, patients=300, sites=3, seed=11, fault_rate=0.05)
    config = load_config(out / "sites.yaml")
    for site in config.sites:
        load_site(config, site)
    return out, json.loads((out / "ground_truth.json").read_text())


def q(out: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(out / "warehouse" / "rescue.work.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_counts_per_site_and_type_equal_the_ground_truth(cohort) -> None:
    out, truth = cohort
    loads = {
        (s, t): (r, a, qn)
        for s, t, r, a, qn in q(
            out, "SELECT site_id, resource_type, received, accepted, quarantined FROM raw.loads"
        )
    }
    expected = {}
    for site_id, site in truth["sites"].items():
        for name, f in site["files"].items():
            expected[(site_id, name.removesuffix(".ndjson"))] = (
                f["lines"],
                f["accepted"],
                sum(f["quarantined"].values()),
            )
    assert loads == expected
    assert all(r == a + qn for r, a, qn in loads.values())


def test_quarantine_reasons_per_file_equal_the_ground_truth(cohort) -> None:
    out, truth = cohort
    got = Counter(
        {
            (s, f, r): n
            for s, f, r, n in q(
                out, "SELECT site_id, source, reason, count(*) FROM raw.quarantine GROUP BY ALL"
            )
        }
    )
    want = Counter(
        {
            (s, f, r): n
            for s, site in truth["sites"].items()
            for f, x in site["files"].items()
            for r, n in x["quarantined"].items()
        }
    )
    assert got == want and sum(want.values()) > 0


def test_every_injected_fault_is_where_the_ground_truth_says(cohort) -> None:
    out, truth = cohort
    quarantined = {
        (s, f, line): reason
        for s, f, line, reason in q(
            out, "SELECT site_id, source, line_number, reason FROM raw.quarantine"
        )
    }
    kinds = Counter()
    for fault in truth["faults"]:
        key = (fault["site_id"], fault["file"], fault["line"])
        kinds[fault["kind"]] += 1
        if fault["expected"] == "quarantined":
            assert quarantined.get(key) == fault["reason"], fault
        else:
            assert key not in quarantined, fault
    assert {
        "not_json",
        "invalid_utf8",
        "unknown_resource_type",
        "missing_id",
        "wrong_type",
        "invalid_date",
        "duplicate",
        "updated_version",
    } <= set(kinds)


def test_versions_and_current_resources_equal_the_ground_truth(cohort) -> None:
    out, truth = cohort
    versions = dict(
        ((s, f), n)
        for s, f, n in q(
            out, "SELECT site_id, source, count(*) FROM raw.fhir_resource_versions GROUP BY ALL"
        )
    )
    current = dict(
        ((s, t), n)
        for s, t, n in q(
            out, "SELECT site_id, resource_type, count(*) FROM raw.fhir_resources GROUP BY ALL"
        )
    )
    for site_id, site in truth["sites"].items():
        for name, f in site["files"].items():
            assert versions.get((site_id, name), 0) == f["distinct_versions"], (site_id, name)
            assert (
                current.get((site_id, name.removesuffix(".ndjson")), 0) == f["current_resources"]
            ), (site_id, name)


def test_updated_versions_resolve_to_the_newer_one_even_when_it_came_first(cohort) -> None:
    out, truth = cohort
    updated = [f for f in truth["faults"] if f["kind"] == "updated_version"]
    assert updated
    current = dict(
        ((s, t, i), v)
        for s, t, i, v in q(
            out, "SELECT site_id, resource_type, resource_id, version_id FROM raw.fhir_resources"
        )
    )
    late = 0
    for fault in updated:
        assert current[(fault["site_id"], fault["resource_type"], fault["resource_id"])] == "2", (
            fault
        )
        late += fault["line"] > fault["related_line"]
    assert late >= 1  # at least one older version arrived after the newer one


def test_unknown_elements_are_accepted_and_flagged_by_full_validation(cohort) -> None:
    out, truth = cohort
    config = load_config(out / "sites.yaml")
    with work_db(config) as con:
        validate_pending(con)
    flagged = {
        (s, i)
        for s, i in q(
            out, "SELECT site_id, resource_id FROM raw.version_validation WHERE outcome = 'invalid'"
        )
    }
    faults = [f for f in truth["faults"] if f["kind"] == "unknown_element"]
    assert faults
    for fault in faults:
        assert (fault["site_id"], fault["resource_id"]) in flagged


def test_reloading_the_cohort_adds_nothing(cohort) -> None:
    out, _truth = cohort
    before = q(
        out,
        "SELECT (SELECT count(*) FROM raw.fhir_resource_versions), (SELECT count(*) FROM raw.quarantine)",
    )
    config = load_config(out / "sites.yaml")
    for site in config.sites:
        assert load_site(config, site).files_read == 0
        full = load_site(config, site, full=True)
        assert full.files_read > 0 and full.total().new_versions == 0
    assert (
        q(
            out,
            "SELECT (SELECT count(*) FROM raw.fhir_resource_versions), (SELECT count(*) FROM raw.quarantine)",
        )
        == before
    )
