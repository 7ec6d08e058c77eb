"""Realistic input faults, each an extra line that never removes data the ground truth needs.

For a resource chosen with probability `fault_rate`, one kind that fits its role is drawn and
turned into lines placed before it, right after it, or deferred to the end of the patient's block
("later in the file"). Only `updated_version` changes the resource's own line (it becomes v2).

| kind | the extra line | expected |
|---|---|---|
| not_json | a copy cut short (on an ASCII byte) | quarantined `not_json` |
| invalid_utf8 | a Patient copy with a Latin-1 encoded name | quarantined `invalid_utf8` |
| unknown_resource_type | a copy with a misspelt type | quarantined `unknown_resource_type` |
| missing_id | a copy without `id` | quarantined `invalid_id` |
| missing_element | an Observation copy without `code` | quarantined `missing_element` |
| wrong_type | a CA-125 copy with the value as a JSON string | quarantined `wrong_type` |
| invalid_date | a copy dated 2024-02-30 | quarantined `invalid_date` |
| unknown_element | same id and meta plus `ca125Comment`, later | accepted, current, invalid R4 |
| duplicate | the same bytes again, later | accepted, no new version |
| updated_version | v1 (older, preliminary value); a third arrive after v2 | accepted, v2 current |
| entered_in_error | a PD assessment under a new id, entered-in-error | accepted, ignored by core |
| unconvertible_unit | a CA-125 after randomisation in ng/mL, new id | accepted, flagged, unused |
| future_date | a CA-125 dated 30-400 days after the reference date | accepted, beyond cut-off |
| unmapped_code | an Observation with a local code in no concept map | accepted, unmapped |
| late_correction | (not drawn) a corrected response's v1, after v2 | accepted, v2 current |
| deleted_at_site | (not drawn) a PD sent in error, then a `deleted` entry | accepted, deleted |
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson

from rescue_pipeline.synth.fhir import Emitted
from rescue_pipeline.synth.ids import resource_id

QUARANTINE_REASONS: dict[str, str] = {
    "not_json": "not_json",
    "invalid_utf8": "invalid_utf8",
    "unknown_resource_type": "unknown_resource_type",
    "missing_id": "invalid_id",
    "missing_element": "missing_element",
    "wrong_type": "wrong_type",
    "invalid_date": "invalid_date",
}
ACCEPTED_NOTES: dict[str, str] = {
    "unknown_element": "new version, current by later arrival; clinically identical; "
    "fails R4 validation (unknown element)",
    "duplicate": "exact duplicate: no new version",
    "updated_version": "v1 (preliminary) of a resource whose v2 is current",
    "entered_in_error": "new resource with status entered-in-error: ignored by core",
    "unconvertible_unit": "CA-125 in ng/mL: flagged, never used",
    "future_date": "dated after the reference date: beyond the data cut-off",
    "unmapped_code": "local code in no concept map: counted as unmapped",
    "late_correction": "v1 of a corrected response, arriving after v2: never current",
    "deleted_at_site": "sent in error, then deleted at the site: never used",
}
KINDS = tuple(QUARANTINE_REASONS) + tuple(ACCEPTED_NOTES)
_GENERIC = ("not_json", "duplicate", "missing_id", "unknown_resource_type")
_CA125 = (
    "wrong_type",
    "unknown_element",
    "updated_version",
    "future_date",
    "unmapped_code",
    "missing_element",
    "invalid_date",
    *_GENERIC,
)
KINDS_BY_ROLE: dict[str, tuple[str, ...]] = {
    "patient": ("invalid_utf8", "invalid_utf8", "invalid_utf8", "updated_version", *_GENERIC),
    "ca125": _CA125,
    "ca125_post": (*_CA125, "unconvertible_unit", "unconvertible_unit", "unconvertible_unit"),
    "assessment_post": (
        "entered_in_error",
        "entered_in_error",
        "entered_in_error",
        "missing_element",
        "invalid_date",
        *_GENERIC,
    ),
    "observation": ("missing_element", "invalid_date", *_GENERIC),
    "other": _GENERIC,
}
ROLE_WEIGHT: dict[str, float] = {
    "patient": 4.0,
    "assessment_post": 3.0,
    "ca125_post": 1.5,
    "ca125": 1.0,
    "observation": 1.0,
    "other": 0.6,
}
"""Per-role multipliers of the fault rate, so rare resources (Patient) still show their faults."""
BAD_DATE = "2024-02-30T10:00:00Z"


@dataclass
class FaultLine:
    """An extra line and what the landing layer is expected to do with it."""

    data: bytes
    kind: str
    resource_type: str
    resource_id: str | None
    related: str = "none"  # "main": the resource's own line is related (copied or superseded)


@dataclass
class Injection:
    """The resource's own line plus the fault lines around it."""

    main: bytes
    before: list[FaultLine] = field(default_factory=list)
    after: list[FaultLine] = field(default_factory=list)
    deferred: list[FaultLine] = field(default_factory=list)


def dumps(resource: dict[str, Any]) -> bytes:
    """The one serialisation used for every line."""
    return orjson.dumps(resource)


def record(
    line: FaultLine, site_id: str, file: str, number: int, related_line: int | None
) -> dict[str, Any]:
    """The ground-truth entry of one injected fault."""
    reason = QUARANTINE_REASONS.get(line.kind)
    return {
        "site_id": site_id,
        "file": file,
        "line": number,
        "kind": line.kind,
        "resource_type": line.resource_type,
        "resource_id": line.resource_id,
        "expected": "quarantined" if reason else "accepted",
        "reason": reason,
        "note": ACCEPTED_NOTES.get(line.kind, "quarantined"),
        "related_line": related_line,
    }


class Injector:
    """Draws faults for one patient's resources from its own random stream."""

    def __init__(self, seed: int, patient: int, rate: float, ref: date, local: str) -> None:
        self.rng = random.Random(f"rescue-synth:{seed}:{patient}:faults")
        self.seed = seed
        self.patient = patient
        self.rate = rate
        self.ref = ref
        self.local = local
        self.counter = 0

    def _new_id(self) -> str:
        self.counter += 1
        return resource_id(self.seed, self.patient, self.counter, namespace="fault")

    def inject(self, item: Emitted) -> Injection:
        """Serialise `item` and, with probability `rate`, add one fitting fault."""
        main = dumps(item.resource)
        if self.rate <= 0 or self.rng.random() >= min(0.9, self.rate * ROLE_WEIGHT[item.role]):
            return Injection(main)
        kind = self.rng.choice(KINDS_BY_ROLE[item.role])
        method: Callable[[Emitted, bytes], Injection] = getattr(self, f"_{kind}")
        return method(item, main)

    # -- quarantined -----------------------------------------------------------------------
    def _line(self, item: Emitted, data: bytes, kind: str) -> FaultLine:
        return FaultLine(data, kind, item.resource_type, item.resource.get("id"), "main")

    def _copy(self, item: Emitted) -> dict[str, Any]:
        copied: dict[str, Any] = orjson.loads(dumps(item.resource))
        return copied

    def _not_json(self, item: Emitted, main: bytes) -> Injection:
        cut = len(main) * self.rng.randint(30, 70) // 100
        while cut > 1 and main[cut] >= 0x80:
            cut -= 1
        return Injection(main, after=[self._line(item, main[:cut], "not_json")])

    def _invalid_utf8(self, item: Emitted, main: bytes) -> Injection:
        copy = self._copy(item)
        copy["name"][0]["given"] = ["Zoë"]
        data = dumps(copy).replace("Zoë".encode(), "Zoë".encode("latin-1"), 1)
        return Injection(main, after=[self._line(item, data, "invalid_utf8")])

    def _unknown_resource_type(self, item: Emitted, main: bytes) -> Injection:
        copy = self._copy(item)
        name = item.resource_type
        copy["resourceType"] = name[:-3] + name[-2:]  # Observation -> Observaton
        return Injection(main, after=[self._line(item, dumps(copy), "unknown_resource_type")])

    def _missing_id(self, item: Emitted, main: bytes) -> Injection:
        copy = self._copy(item)
        del copy["id"]
        line = FaultLine(dumps(copy), "missing_id", item.resource_type, None, "main")
        return Injection(main, after=[line])

    def _missing_element(self, item: Emitted, main: bytes) -> Injection:
        copy = self._copy(item)
        del copy["code"]
        return Injection(main, after=[self._line(item, dumps(copy), "missing_element")])

    def _wrong_type(self, item: Emitted, main: bytes) -> Injection:
        copy = self._copy(item)
        copy["valueQuantity"]["value"] = str(copy["valueQuantity"]["value"])
        return Injection(main, after=[self._line(item, dumps(copy), "wrong_type")])

    def _invalid_date(self, item: Emitted, main: bytes) -> Injection:
        copy = self._copy(item)
        copy.pop("effectivePeriod", None)
        copy["effectiveDateTime"] = BAD_DATE
        return Injection(main, after=[self._line(item, dumps(copy), "invalid_date")])

    # -- accepted --------------------------------------------------------------------------
    def _unknown_element(self, item: Emitted, main: bytes) -> Injection:
        copy = self._copy(item)
        copy["ca125Comment"] = "sample slightly haemolysed, result valid"
        return Injection(main, deferred=[self._line(item, dumps(copy), "unknown_element")])

    def _duplicate(self, item: Emitted, main: bytes) -> Injection:
        return Injection(main, deferred=[self._line(item, main, "duplicate")])

    def _updated_version(self, item: Emitted, main: bytes) -> Injection:
        v2 = self._copy(item)
        v2["meta"]["versionId"] = "2"
        v1 = self._copy(item)
        stamp = v1["meta"]["lastUpdated"]
        earlier = date.fromisoformat(stamp[:10]) - timedelta(days=self.rng.randint(1, 3))
        v1["meta"]["lastUpdated"] = earlier.isoformat() + stamp[10:]
        if item.resource_type == "Patient":
            v1.pop("deceasedDateTime", None)
            v1["address"][0]["line"] = ["(address pending verification)"]
        else:
            quantity = v1["valueQuantity"]
            if "comparator" in quantity:
                del quantity["comparator"]
            quantity["value"] = quantity["value"] + (
                1 if isinstance(quantity["value"], int) else 1.5
            )
            v1["status"] = "preliminary"
        line = self._line(item, dumps(v1), "updated_version")
        if self.rng.random() < 1 / 3:
            return Injection(dumps(v2), deferred=[line])
        return Injection(dumps(v2), before=[line])

    def _new_observation(self, item: Emitted, kind: str, changes: dict[str, Any]) -> FaultLine:
        copy = self._copy(item)
        copy["id"] = self._new_id()
        copy.update(changes)
        return FaultLine(dumps(copy), kind, "Observation", copy["id"])

    def _entered_in_error(self, item: Emitted, main: bytes) -> Injection:
        value = item.resource["valueCodeableConcept"]
        if value.get("coding", [{}])[0].get("system") == "http://snomed.info/sct":
            pd: dict[str, Any] = {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "271299001",
                        "display": "Patient's condition worsened",
                    }
                ]
            }
        elif "coding" in value:
            pd = {
                "coding": [
                    {
                        "system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
                        "code": "C35571",
                        "display": "Progressive Disease",
                    }
                ],
                "text": "PD",
            }
        else:
            pd = {"text": "PD"}
        line = self._new_observation(
            item, "entered_in_error", {"status": "entered-in-error", "valueCodeableConcept": pd}
        )
        return Injection(main, after=[line])

    def _unconvertible_unit(self, item: Emitted, main: bytes) -> Injection:
        quantity = dict(item.resource["valueQuantity"])
        quantity.pop("comparator", None)
        quantity.update({"unit": "ng/mL", "code": "ng/mL"})
        line = self._new_observation(item, "unconvertible_unit", {"valueQuantity": quantity})
        return Injection(main, after=[line])

    def _future_date(self, item: Emitted, main: bytes) -> Injection:
        day = self.ref + timedelta(days=self.rng.randint(30, 400))
        changes: dict[str, Any] = {"effectiveDateTime": f"{day.isoformat()}T09:30:00Z"}
        line = self._new_observation(item, "future_date", changes)
        data = orjson.loads(line.data)
        data.pop("effectivePeriod", None)
        line.data = dumps(data)
        return Injection(main, after=[line])

    def _unmapped_code(self, item: Emitted, main: bytes) -> Injection:
        changes = {
            "code": {
                "coding": [
                    {
                        "system": f"{self.local}/lab-extra",
                        "code": "HE4",
                        "display": "Human epididymis protein 4",
                    }
                ]
            },
            "valueQuantity": {
                "value": self.rng.randint(40, 400),
                "unit": "pmol/L",
                "system": "http://unitsofmeasure.org",
                "code": "pmol/L",
            },
        }
        return Injection(main, after=[self._new_observation(item, "unmapped_code", changes)])
