"""The output layout contract: Bulk Data manifests and a ready sites.yaml."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import yaml

if TYPE_CHECKING:
    from conftest import Cohort

TARGETS = {
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "https://rescue-trial.example.org/fhir/CodeSystem/rescue-assessment",
}


def test_manifests_list_every_file_with_its_count(cohort_demo: Cohort) -> None:
    for site in cohort_demo.summary.sites:
        manifest = orjson.loads((cohort_demo.path / site / "manifest.json").read_bytes())
        assert manifest["transactionTime"] == "2026-06-30T00:00:00Z"
        assert manifest["requiresAccessToken"] is False and manifest["error"] == []
        files = sorted(p.name for p in (cohort_demo.path / site).glob("*.ndjson"))
        assert [o["url"] for o in manifest["output"]] == files
        for out in manifest["output"]:
            assert out["url"] == f"{out['type']}.ndjson"
            lines = (cohort_demo.path / site / out["url"]).read_bytes().count(b"\n")
            assert out["count"] == lines


def test_sites_yaml_is_ready_to_use(cohort_demo: Cohort) -> None:
    text = (cohort_demo.path / "sites.yaml").read_text()
    assert text.startswith("#")
    config = yaml.safe_load(text)
    assert config["study_id"] == "RESCUE"
    assert config["warehouse"] == "warehouse/rescue.duckdb"
    analysis = config["analysis"]
    assert analysis["assessment_interval_days"] == 84
    assert analysis["assessment_window_days"] == 14
    assert str(config["analysis"]["data_cutoff"]) == "2026-06-30"
    ids = [s["id"] for s in config["sites"]]
    assert ids == cohort_demo.summary.sites
    for site in config["sites"]:
        assert set(site) == {"id", "name", "timezone", "source", "concept_map"}
        assert site["source"] == {"kind": "ndjson", "path": site["id"]}
        assert (cohort_demo.path / site["source"]["path"] / "manifest.json").exists()
        for entry in site["concept_map"]:
            assert set(entry) == {"system", "code", "target_system", "target_code", "display"}
            assert entry["target_system"] in TARGETS
    maps = {s["id"]: s["concept_map"] for s in config["sites"]}
    assert maps["site-a"] == [] and maps["site-b"] and maps["site-c"]


def test_ground_truth_head_and_key_order(cohort_demo: Cohort) -> None:
    truth = cohort_demo.truth
    assert list(truth) == ["generator", "analysis", "sites", "faults", "subjects"]
    assert truth["generator"] == {
        "seed": 2026,
        "patients": 250,
        "sites": 3,
        "reference_date": "2026-06-30",
        "fault_rate": 0.02,
        "version": 1,
    }
    assert truth["analysis"]["pfi_days_6_months"] == 183
    assert truth["analysis"]["uln_u_per_ml"] == 35
    assert {s["flavour"] for s in truth["sites"].values()} == {"a", "b", "c"}
    assert not list(cohort_demo.path.glob(".*"))  # no temporary files left behind
