"""Named rows between the core tables and the rules: what a query returns, by name, so no rule
input is a position in a tuple."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any, Self

import duckdb


@dataclass(frozen=True)
class Subject:
    """A trial subject as core.subjects holds her (one row per subject)."""

    usubjid: str
    site_id: str
    arm: str | None
    randomised_on: dt.date | None
    consented_on: dt.date | None
    consent_data_transfer: bool | None
    age_at_consent: int | None
    died_on: dt.date | None
    source_id: str  # the ResearchSubject's id
    sex: str | None  # FHIR administrative gender as sent
    subject_status: str | None  # ResearchSubject.status as sent
    study_ended_on: dt.date | None  # ResearchSubject.period.end of a randomised subject
    race: str | None  # CDISC RACE from the US Core race extension, if sent

    @classmethod
    def read_all(cls, con: duckdb.DuckDBPyConnection) -> list[Self]:
        """Every subject, in usubjid order (the batches and the outputs follow it)."""
        return _read(cls, con, "FROM core.subjects ORDER BY usubjid")


@dataclass(frozen=True)
class Diagnosis:
    """A primary cancer recorded for a subject (core.diagnoses)."""

    primary_site: str | None
    behaviour: str | None
    histology_class: str | None
    histology_code: str | None
    source_id: str
    primary_code: str | None


def columns(cls: type) -> str:
    """The row's fields as a SELECT list, in order."""
    return ", ".join(f.name for f in fields(cls))


def _read(cls: Any, con: duckdb.DuckDBPyConnection, tail: str) -> list[Any]:
    return [cls(*row) for row in con.execute(f"SELECT {columns(cls)} {tail}").fetchall()]
