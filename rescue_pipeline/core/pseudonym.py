"""Pseudonymous subject ids (usubjid) for core and everything after it.

docs/warehouse.md: usubjid = RESCUE-<SITE>-<NNNN> from the ResearchSubject identifier
RSC-<SITE>-<NNNN>;
without one, RESCUE-<site_id>-X<first 10 hex digits of HMAC-SHA256(key, "<site_id>/<Patient id>")>.
The key comes from RESCUE_PSEUDONYM_KEY, so ids are stable across reruns and cannot be
recomputed from the Patient id without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from rescue_pipeline.config import KEY_ENV, Environment

# The demo's own key, documented so that its outputs are reproducible; never used elsewhere.
DEMO_KEY = "rescue-demo-pseudonym-key-not-for-real-data"
_SUBJECT_ID = re.compile(r"RSC-([A-Z0-9]{1,8})-(\d{4,})")


class PseudonymKeyMissing(RuntimeError):
    """Raised outside the demo when RESCUE_PSEUDONYM_KEY is not set."""


class PseudonymKeyChanged(PseudonymKeyMissing):
    """The key is not the one the subject ids were made with: every hashed id would change."""


# A pseudonym made by hashed_usubjid (the others come from the site's RSC-<SITE>-NNNN id).
HASHED = r"-X[0-9a-f]{10}$"


def pseudonym_key() -> bytes:
    value = Environment.current().pseudonym_key
    if not value:
        raise PseudonymKeyMissing(
            f"{KEY_ENV} is not set: it keys the pseudonymous subject ids (set a secret of at "
            "least 16 characters, the same on every run)"
        )
    if len(value) < 16:
        raise PseudonymKeyMissing(f"{KEY_ENV} is too short: use at least 16 characters")
    return value.encode("utf-8")


def usubjid_from_identifier(identifier: str | None) -> str | None:
    """RSC-A-0001 → RESCUE-A-0001; anything else → None."""
    if identifier is None:
        return None
    m = _SUBJECT_ID.fullmatch(identifier.strip())
    return f"RESCUE-{m.group(1)}-{m.group(2)}" if m else None


def hashed_usubjid(key: bytes, site_id: str, patient_id: str) -> str:
    digest = hmac.new(key, f"{site_id}/{patient_id}".encode(), hashlib.sha256).hexdigest()
    return f"RESCUE-{site_id}-X{digest[:10]}"


def usubjid(key: bytes, site_id: str, patient_id: str, identifier: str | None) -> str:
    return usubjid_from_identifier(identifier) or hashed_usubjid(key, site_id, patient_id)
