"""Shared fixtures: hand-made FHIR lines written as real NDJSON site folders and configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import yaml


def obs(
    rid: str,
    *,
    value: object = 40.0,
    version: str | None = "1",
    updated: str | None = "2024-01-01T00:00:00Z",
    **extra: object,
) -> dict[str, object]:
    """A CA-125 Observation as sites send it."""
    resource: dict[str, object] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "10334-1"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T10:00:00+01:00",
        "valueQuantity": {"value": value, "unit": "U/mL", "system": "http://unitsofmeasure.org"},
    }
    meta = {k: v for k, v in (("versionId", version), ("lastUpdated", updated)) if v is not None}
    if meta:
        resource["meta"] = meta
    resource.update(extra)
    return resource


def line(resource: object) -> bytes:
    return orjson.dumps(resource)


@pytest.fixture
def write_site(tmp_path: Path) -> Callable[..., Path]:
    """write_site("site-a", {"Observation": [bytes | dict, ...]}) → the site folder."""

    def write(site_id: str, files: dict[str, list[bytes | dict[str, object]]]) -> Path:
        folder = tmp_path / "sites" / site_id
        folder.mkdir(parents=True, exist_ok=True)
        for rtype, lines in files.items():
            raw = b"".join((x if isinstance(x, bytes) else line(x)) + b"\n" for x in lines)
            (folder / f"{rtype}.ndjson").write_bytes(raw)
        return folder

    return write


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(data: dict[str, object], name: str = "sites.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write
