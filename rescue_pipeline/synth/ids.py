"""Deterministic identifiers: resource ids, subject numbers and MRNs.

Ids are 128-bit hashes of (seed, patient, counter) written as 32 hex digits (a valid FHIR id),
so they look like a server's ids, never depend on the random streams of the story, and never
collide in practice.
"""

from __future__ import annotations

from hashlib import blake2b

SUBJECT_ID_SYSTEM = "https://rescue-trial.example.org/fhir/subject-id"
STUDY_ID = "NCT07295132"


def resource_id(seed: int, patient: int, counter: int, namespace: str = "r") -> str:
    """The id of the `counter`-th resource of `patient` (faults use their own namespace)."""
    key = f"{seed}:{patient}:{namespace}:{counter}".encode()
    return blake2b(key, digest_size=16).hexdigest()


def medication_id(seed: int, site_id: str, drug: str) -> str:
    """The id of a site's shared Medication resource for one drug."""
    return blake2b(f"{seed}:{site_id}:medication:{drug}".encode(), digest_size=16).hexdigest()


def subject_identifier(site_code: str, number: int) -> str:
    """`RSC-<SITE>-NNNN` (more digits once a site passes 9,999 subjects)."""
    return f"RSC-{site_code}-{number:04d}"


def mrn(site_code: str, patient: int) -> str:
    """A hospital record number, unique per patient (a bijection of the index)."""
    return f"{site_code}{(patient * 7919 + 104729) % 1_000_000_000:09d}"
