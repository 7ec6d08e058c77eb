"""Structural checks: what decides acceptance, element by element."""

from __future__ import annotations

import json

import pytest

from rescue_pipeline.fhir_types import r4_resource_types
from rescue_pipeline.raw.lines import Accepted, Rejected, classify
from rescue_pipeline.raw.structure import REASONS, check_resource
from tests.conftest import line, obs


@pytest.mark.parametrize(
    "value",
    [
        "2024",
        "2024-02",
        "2024-02-29",
        "2024-02-29T10:00:00Z",
        "2024-02-29T10:00:00.123+05:30",
        "2024-12-31T23:59:60-14:00",
    ],
)
def test_valid_datetimes_pass(value: str) -> None:
    assert check_resource(obs("o1", effectiveDateTime=value), "Observation") is None


@pytest.mark.parametrize(
    "value",
    [
        "2023-02-29",
        "2024-02-30T10:00:00Z",
        "2024-13-01",
        "2024-01-01T10:00:00",
        "01/02/2024",
        "2024-1-5",
        "0000",
    ],
)
def test_invalid_datetimes_are_invalid_date(value: str) -> None:
    problem = check_resource(obs("o1", effectiveDateTime=value), "Observation")
    assert problem is not None
    assert (problem.reason, problem.element) == ("invalid_date", "effectiveDateTime")
    assert value not in problem.detail  # a date may be PHI: never echoed


def test_birth_date_must_be_a_date_not_a_datetime() -> None:
    problem = check_resource(
        {"resourceType": "Patient", "id": "p", "birthDate": "1960-01-01T00:00:00Z"}, "Patient"
    )
    assert problem is not None and problem.element == "birthDate"


@pytest.mark.parametrize(
    ("resource", "reason", "element"),
    [
        (obs("o1", value="40"), "wrong_type", "valueQuantity.value"),
        (obs("o1", value=True), "wrong_type", "valueQuantity.value"),
        (obs("o1", code={"coding": {"code": "x"}}), "wrong_type", "code.coding"),
        (obs("o1", code={"coding": [{"code": 10334}]}), "wrong_type", "code.coding[0].code"),
        (obs("o1", subject="Patient/p1"), "wrong_type", "subject"),
        (
            obs("o1", effectivePeriod={"start": "2024-02-30"}),
            "invalid_date",
            "effectivePeriod.start",
        ),
        (obs("o1", partOf={"reference": "Procedure/x"}), "wrong_type", "partOf"),
        ({**obs("o1"), "meta": {"versionId": 2}}, "wrong_type", "meta.versionId"),
        ({**obs("o1"), "meta": {"lastUpdated": "2024-01-01"}}, "invalid_date", "meta.lastUpdated"),
        ({k: v for k, v in obs("o1").items() if k != "code"}, "missing_element", "code"),
        ({k: v for k, v in obs("o1").items() if k != "status"}, "missing_element", "status"),
        (
            {"resourceType": "Consent", "id": "c", "status": "active", "scope": {}, "category": []},
            "missing_element",
            "category",
        ),
        (
            {"resourceType": "MedicationAdministration", "id": "m", "status": "completed"},
            "missing_element",
            "subject",
        ),
    ],
)
def test_structural_problems_name_the_element(
    resource: dict[str, object], reason: str, element: str
) -> None:
    problem = check_resource(resource, str(resource["resourceType"]))
    assert problem is not None
    assert (problem.reason, problem.element) == (reason, element)
    assert problem.reason in REASONS


def test_types_without_rules_get_the_common_checks_only() -> None:
    assert (
        check_resource(
            {"resourceType": "Encounter", "id": "e", "class": {"code": "AMB"}}, "Encounter"
        )
        is None
    )
    problem = check_resource({"resourceType": "Encounter", "id": "e", "meta": []}, "Encounter")
    assert problem is not None and problem.element == "meta"


def test_r4_resource_types_are_complete_and_r4_specific() -> None:
    types = r4_resource_types()
    assert len(types) == 146
    assert {
        "Patient",
        "MedicationStatement",
        "MedicinalProduct",
        "EffectEvidenceSynthesis",
    } <= types
    assert "Ingredient" not in types  # R4B/R5 only


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty_line"),
        (b"   ", "empty_line"),
        (
            b'{"resourceType": "Patient", "id": "p1", "name": [{"family": "Zo\xeb"}]}',
            "invalid_utf8",
        ),
        (b'{"resourceType": "Patient", "id": "p1"', "not_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"id": "p1"}', "missing_resource_type"),
        (b'{"resourceType": "Observaton", "id": "p1"}', "unknown_resource_type"),
        (b'{"resourceType": "Patient"}', "invalid_id"),
        (b'{"resourceType": "Patient", "id": "has space"}', "invalid_id"),
        (b'{"resourceType": "Patient", "id": "' + b"x" * 65 + b'"}', "invalid_id"),
    ],
)
def test_line_level_rejections(raw: bytes, reason: str) -> None:
    outcome = classify(raw)
    assert isinstance(outcome, Rejected)
    assert outcome.reason == reason


def test_invalid_utf8_detail_gives_the_offset() -> None:
    outcome = classify(b'{"a": "\xff"}')
    assert (
        isinstance(outcome, Rejected)
        and outcome.detail == "invalid UTF-8 byte 0xff at byte offset 7"
    )


def test_accepted_version_is_hashed_canonically_and_kept_as_sent() -> None:
    spaced = b'{ "status": "final", "resourceType": "Observation",  "id": "o1", "code": {"text": "CA-125"} }'
    outcome = classify(spaced)
    compact = classify(
        line(
            {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "code": {"text": "CA-125"},
            }
        )
    )
    assert isinstance(outcome, Accepted) and isinstance(compact, Accepted)
    # the payload keeps the order sent; the spaced line is kept too, the compact one is its payload
    assert (
        outcome.payload
        == b'{"status":"final","resourceType":"Observation","id":"o1","code":{"text":"CA-125"}}'
    )
    assert outcome.as_received == spaced and compact.as_received is None
    import hashlib

    assert outcome.payload_sha256 == hashlib.sha256(outcome.payload).hexdigest()
    respaced = classify(spaced.replace(b", ", b",    "))
    assert isinstance(respaced, Accepted)
    assert respaced.payload_sha256 == outcome.payload_sha256  # whitespace makes no new version


def test_bom_is_tolerated_on_the_first_line_only() -> None:
    raw = b"\xef\xbb\xbf" + line({"resourceType": "Patient", "id": "p1"})
    assert isinstance(classify(raw, first_line=True), Accepted)
    assert isinstance(classify(raw), Rejected)


def test_a_line_nested_past_orjsons_limit_is_quarantined_not_fatal() -> None:
    deep: dict[str, object] = {}
    cur = deep
    for _ in range(300):
        cur["extension"] = [{}]
        cur = cur["extension"][0]  # type: ignore[index]
    resource = {"resourceType": "Patient", "id": "p1", "_birthDate": deep}
    outcome = classify(json.dumps(resource).encode())
    assert isinstance(outcome, Rejected) and outcome.reason == "too_deep"
    assert outcome.detail.startswith("Patient: nested deeper")
    shallow = {"resourceType": "Patient", "id": "p1", "_birthDate": {"extension": [{}]}}
    assert isinstance(classify(json.dumps(shallow).encode()), Accepted)


def test_a_repeated_key_is_quarantined_whatever_the_spacing() -> None:
    for raw in (
        b'{"resourceType":"Patient","id":"p1","gender":"male","gender":"female"}',
        b'{"resourceType": "Patient", "id": "p1", "name": [{"family": "A", "family": "B"}]}',
    ):
        outcome = classify(raw)
        assert isinstance(outcome, Rejected) and outcome.reason == "duplicate_key", raw
        assert "female" not in outcome.detail and "B" not in outcome.detail.split(":")[-1]
    # spacing, escapes and 1.50 change the length but repeat nothing: accepted
    spaced = b'{"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "\\u00e9"}, "valueQuantity": {"value": 1.50}}'
    assert isinstance(classify(spaced), Accepted)


def test_a_repeated_key_is_found_even_when_the_payload_is_as_long_as_the_line() -> None:
    """1e6 is written 1000000.0 (longer) while the lost "k":0 is shorter: lengths can match."""
    line = b'{"resourceType":"Patient","id":"p1","gender":"female","v":1e6,"k":0,"k":1}'
    outcome = classify(line)
    assert isinstance(outcome, Rejected) and outcome.reason == "duplicate_key"
