"""Every non-fault line is UTF-8 JSON and valid FHIR (R4B models); fault lines are what they say."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import TYPE_CHECKING

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

if TYPE_CHECKING:
    from conftest import Cohort


SAMPLE_PER_TYPE = 150


def test_non_fault_lines_are_json_and_valid_r4(cohort_demo: Cohort) -> None:
    rng = random.Random(0)
    checked: defaultdict[str, int] = defaultdict(int)
    for site in cohort_demo.summary.sites:
        for path in sorted((cohort_demo.path / site).glob("*.ndjson")):
            faults = cohort_demo.fault_lines(site, path.name)
            lines = path.read_bytes().splitlines()
            good = [ln for i, ln in enumerate(lines, 1) if i not in faults]
            ids = set()
            for line in good:
                resource = orjson.loads(line.decode("utf-8"))
                assert resource["resourceType"] == path.stem
                ids.add(resource["id"])
            assert len(ids) == len(good), f"ids unique in {site}/{path.name}"
            for line in rng.sample(good, min(SAMPLE_PER_TYPE, len(good))):
                get_fhir_model_class(path.stem).model_validate_json(line)
                checked[path.stem] += 1
    assert set(checked) >= {
        "Patient",
        "Observation",
        "Condition",
        "Procedure",
        "Consent",
        "ResearchSubject",
        "MedicationAdministration",
        "Medication",
        "MedicationRequest",
        "MedicationStatement",
    }


def test_fault_lines_hold_the_fault_they_are_recorded_as(cohort_1000: Cohort) -> None:
    lines_by_file: dict[tuple[str, str], list[bytes]] = {}
    for fault in cohort_1000.truth["faults"]:
        key = (fault["site_id"], fault["file"])
        if key not in lines_by_file:
            lines_by_file[key] = (cohort_1000.path / key[0] / key[1]).read_bytes().splitlines()
        lines = lines_by_file[key]
        data = lines[fault["line"] - 1]
        kind = fault["kind"]
        if kind == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")
            continue
        if kind == "not_json":
            data.decode("utf-8")
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(data)
            continue
        resource = orjson.loads(data)
        related = fault["related_line"]
        if kind == "unknown_resource_type":
            assert resource["resourceType"] != fault["file"].removesuffix(".ndjson")
        elif kind == "missing_id":
            assert "id" not in resource
        elif kind == "missing_element":
            assert "code" not in resource
        elif kind == "wrong_type":
            assert isinstance(resource["valueQuantity"]["value"], str)
        elif kind == "invalid_date":
            assert resource["effectiveDateTime"] == "2024-02-30T10:00:00Z"
        elif kind == "duplicate":
            assert data == lines[related - 1] and related < fault["line"]
        elif kind == "unknown_element":
            original = orjson.loads(lines[related - 1])
            assert related < fault["line"] and "ca125Comment" in resource
            assert resource["meta"] == original["meta"] and resource["id"] == original["id"]
            with pytest.raises(ValidationError):
                get_fhir_model_class("Observation").model_validate_json(data)
        elif kind == "updated_version":
            v2 = orjson.loads(lines[related - 1])
            assert resource["id"] == v2["id"] == fault["resource_id"]
            assert resource["meta"]["versionId"] == "1" and v2["meta"]["versionId"] == "2"
            assert resource["meta"]["lastUpdated"] < v2["meta"]["lastUpdated"]
        elif kind == "entered_in_error":
            assert resource["status"] == "entered-in-error"
        elif kind == "unconvertible_unit":
            assert resource["valueQuantity"]["unit"] == "ng/mL"
        elif kind == "unmapped_code":
            assert resource["code"]["coding"][0]["code"] == "HE4"
        if kind in ("entered_in_error", "unconvertible_unit", "unmapped_code", "future_date"):
            assert related is None and resource["id"] == fault["resource_id"]


def test_late_older_versions_exist(cohort_1000: Cohort) -> None:
    updated = [f for f in cohort_1000.truth["faults"] if f["kind"] == "updated_version"]
    late = [f for f in updated if f["line"] > f["related_line"]]
    assert updated and late and len(late) < len(updated)


def test_expectation_block_reconciles_with_the_files(cohort_1000: Cohort) -> None:
    faults = cohort_1000.truth["faults"]
    for site_id, site in cohort_1000.truth["sites"].items():
        for file, exp in site["files"].items():
            lines = (cohort_1000.path / site_id / file).read_bytes().splitlines()
            mine = [f for f in faults if f["site_id"] == site_id and f["file"] == file]
            assert exp["lines"] == len(lines)
            quarantined = sum(exp["quarantined"].values())
            assert quarantined == sum(1 for f in mine if f["expected"] == "quarantined")
            assert exp["accepted"] == exp["lines"] - quarantined
            duplicates = sum(1 for f in mine if f["kind"] == "duplicate")
            assert exp["distinct_versions"] == exp["accepted"] - duplicates
            ids = set()
            for number, line in enumerate(lines, 1):
                fault = next((f for f in mine if f["line"] == number), None)
                if fault is None or fault["expected"] == "accepted":
                    ids.add(orjson.loads(line)["id"])
            deleted = {f["resource_id"] for f in mine if f["kind"] == "deleted_at_site"}
            assert exp["current_resources"] == len(ids - deleted), (site_id, file)
