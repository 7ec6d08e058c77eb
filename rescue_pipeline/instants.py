"""FHIR instants (a date-time with its zone) read once, the same way everywhere."""

from __future__ import annotations

import datetime as dt


def utc_instant(value: object) -> dt.datetime | None:
    """`value` as an aware UTC datetime when it is an instant with a zone; otherwise None (not
    text, not ISO 8601, or a date or local time with no zone to place it)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else None
