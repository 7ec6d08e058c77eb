"""The fast path (msgspec) may be stricter than the rules, never more lenient than them."""

from __future__ import annotations

import random

import orjson
import pytest

from rescue_pipeline.raw.fast_check import passes
from rescue_pipeline.raw.structure import check_resource
from tests.conftest import obs

DATES = [
    "2024",
    "2024-02",
    "2024-02-29",
    "2023-02-29",
    "2024-02-30",
    "2024-04-31",
    "2024-13-01",
    "2024-02-29T10:00:00Z",
    "2024-02-29T10:00:00z",
    "2024-02-29t10:00:00Z",
    "2024-02-29 10:00:00Z",
    "2024-02-29T10:00:00+01:00",
    "2024-02-29T10:00:00+0100",
    "2024-02-29T10:00:00+01",
    "2024-02-29T10:00:00-00:00",
    "2024-02-29T10:00:00+14:00",
    "2024-02-29T10:00:00+15:00",
    "2024-02-29T10:00:00+23:59",
    "2024-02-29T10:00:00+24:00",
    "2024-02-29T10:00:00.123Z",
    "2024-02-29T10:00:00.1234567891Z",
    "2024-02-29T10:00:00.Z",
    "2024-02-29T10:00:60Z",
    "2024-02-29T24:00:00Z",
    "2024-02-29T10:00Z",
    "2024-02-29T10:00:00",
    "0000-01-01",
    "0000-01-01T00:00:00Z",
    "10000-01-01",
    " 2024-02-29",
    "2024-02-29 ",
    "2024-2-29",
    "",
    "1900-02-29",
    "2000-02-29",
    "2100-02-29T00:00:00Z",
    "2024-02-29T10:00:00,5Z",
]


def _variants() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for value in DATES:
        out.append(obs("o", effectiveDateTime=value))
        out.append(obs("o", effectivePeriod={"start": value}))
        out.append({**obs("o"), "meta": {"lastUpdated": value}})
        out.append({"resourceType": "Patient", "id": "p", "birthDate": value})
    for bad in (1, True, None, [], {}, "x", 2.5):
        out.append(obs("o", value=bad))
        out.append(obs("o", code={"coding": [{"code": bad}]}))
        out.append(obs("o", subject=bad))
        out.append({**obs("o"), "status": bad})
    return out


@pytest.mark.parametrize("resource", _variants())
def test_fast_path_never_accepts_what_the_rules_reject(resource: dict[str, object]) -> None:
    rtype = str(resource["resourceType"])
    if passes(orjson.dumps(resource), rtype):
        assert check_resource(resource, rtype) is None


def test_fast_path_accepts_ordinary_resources() -> None:
    assert passes(orjson.dumps(obs("o1")), "Observation")
    assert passes(
        orjson.dumps({"resourceType": "Patient", "id": "p", "birthDate": "1960-05-01"}), "Patient"
    )
    assert passes(orjson.dumps({"resourceType": "Encounter", "id": "e"}), "Encounter")


def test_fast_path_never_accepts_random_date_strings_the_rules_reject() -> None:
    rng = random.Random(5)
    alphabet = "0123456789-:TZ+. tz"
    lenient = []
    for _ in range(20_000):
        value = "20" + "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 24)))
        resource = obs("o", effectiveDateTime=value)
        if passes(orjson.dumps(resource), "Observation") and check_resource(
            resource, "Observation"
        ):
            lenient.append(value)
    assert lenient == []
