"""Small hand-made FHIR sites, landed and built into core for real (DuckDB file)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rescue_pipeline.analysis.build import derive_analysis
from rescue_pipeline.config import load_config
from rescue_pipeline.core.build import build_core
from rescue_pipeline.site_load import load_site, work_db

KEY = b"test-key-0123456789abcdef"
SUBJECT_SYSTEM = "https://rescue-trial.example.org/fhir/subject-id"


def patient(pid: str, birth: str = "1960-05-01", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": "female",
        "birthDate": birth,
        "name": [{"family": "Testperson", "given": ["Ada"]}],
        **extra,
    }


def subject(
    rid: str,
    pid: str,
    ident: str | None = "RSC-T-0001",
    arm: str | None = "A: surgery",
    start: str | None = "2024-03-01",
    consent: str | None = None,
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "ResearchSubject",
        "id": rid,
        "status": "on-study",
        "study": {"identifier": {"value": "NCT07295132"}},
        "individual": {"reference": f"Patient/{pid}"},
    }
    if ident:
        r["identifier"] = [{"system": SUBJECT_SYSTEM, "value": ident}]
    if arm:
        r["assignedArm"] = arm
    if start:
        r["period"] = {"start": start}
    if consent:
        r["consent"] = {"reference": f"Consent/{consent}"}
    return r


def consent(
    cid: str,
    pid: str,
    day: str = "2024-02-20T10:00:00+01:00",
    actions: tuple[str, ...] = ("collect", "use", "disclose"),
    status: str = "active",
) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{pid}"},
        "dateTime": day,
        "provision": {
            "type": "permit",
            "action": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": a}
                    ]
                }
                for a in actions
            ],
        },
    }


def ca125(
    oid: str,
    pid: str,
    value: float,
    unit: str,
    day: str = "2024-01-10T09:00:00+01:00",
    coding: list[dict[str, str]] | None = None,
    comparator: str | None = None,
    status: str = "final",
) -> dict[str, Any]:
    q: dict[str, Any] = {
        "value": value,
        "unit": unit,
        "system": "http://unitsofmeasure.org",
        "code": unit,
    }
    if comparator:
        q["comparator"] = comparator
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"coding": coding or [{"system": "http://loinc.org", "code": "10334-1"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day,
        "valueQuantity": q,
    }


def dose(mid: str, pid: str, rxnorm: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": mid,
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm}]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day,
    }


@pytest.fixture
def build(
    tmp_path: Path, write_site: Callable[..., Path], write_config: Callable[..., Path]
) -> Callable[..., duckdb.DuckDBPyConnection]:
    """build({"Patient": [...], ...}, concept_map=[...]) → a read-only connection to the result."""

    def run(
        files: dict[str, list[Any]],
        *,
        concept_map: list[dict[str, str]] | None = None,
        site: str = "site-t",
        analysis: bool = False,
    ) -> duckdb.DuckDBPyConnection:
        write_site(site, files)
        path = write_config(
            {
                "study_id": "RESCUE",
                "warehouse": "wh/rescue.duckdb",
                "analysis": {"data_cutoff": "2026-06-30"},
                "sites": [
                    {
                        "id": site,
                        "source": {"kind": "ndjson", "path": f"sites/{site}"},
                        "concept_map": concept_map or [],
                    }
                ],
            }
        )
        config = load_config(path)
        load_site(config, config.sites[0])
        with work_db(config) as con:
            build_core(con, config, key=KEY, today=dt.date(2026, 6, 30))
            if analysis:
                derive_analysis(con, config, today=dt.date(2026, 6, 30))
        return duckdb.connect(str(config.work_db), read_only=True)

    return run
