"""The structural checks of structure_rules.yaml, compiled to msgspec decoders: the fast path.

msgspec validates a JSON line against typed structs in C, several times faster than walking the
parsed dict in Python. It only answers "surely fine or not": when a line fails it, structure.py's
checker decides (and names the element and the reason). Both read the same rules file; a test
holds this path to never accepting what the checker would reject.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Annotated, Any

import msgspec

from rescue_pipeline.raw.structure import rule_spec

# Full date-times go through msgspec's own RFC 3339 parser (in C, calendar checked, offset
# required); FHIR's partial dates ("2024", "2024-05") and leap seconds do not, and fall to the
# slow path, which accepts them. The slow path is the authority; this one may only be stricter.
_DATETIME = Annotated[dt.datetime, msgspec.Meta(tz=True)]


def _struct(name: str, fields: dict[str, Any]) -> Any:
    return msgspec.defstruct(name, [(k, t | None, None) for k, t in fields.items()])


_Coding = _struct("Coding", {"system": str, "code": str, "display": str})
_TYPES: dict[str, Any] = {
    "string": str,
    "code": str,
    "id": str,
    "uri": str,
    "boolean": bool,
    "decimal": float,
    "integer": int,
    "date": dt.date,
    "dateTime": _DATETIME,
    "instant": _DATETIME,
    "object": dict,
    "Coding": _Coding,
    "CodeableConcept": _struct(
        "CodeableConcept",
        {"coding": list[_Coding], "text": str},  # type: ignore[valid-type]
    ),
    "Reference": _struct("Reference", {"reference": str, "display": str}),
    "Period": _struct("Period", {"start": _DATETIME, "end": _DATETIME}),
    "Quantity": _struct(
        "Quantity", {"value": float, "unit": str, "system": str, "code": str, "comparator": str}
    ),
    "Identifier": _struct("Identifier", {"system": str, "value": str}),
    "Extension": _struct("Extension", {"url": str}),
    "Meta": _struct("Meta", {"versionId": str, "lastUpdated": _DATETIME}),
}
_NON_EMPTY = msgspec.Meta(min_length=1)


def _decoder(rtype: str, spec: dict[str, str]) -> msgspec.json.Decoder[Any]:
    required: list[tuple[str, Any]] = []
    optional: list[tuple[str, Any, None]] = []
    for name, tname in spec.items():
        base = _TYPES[tname.removesuffix("[]")]
        element = name.removesuffix("!")
        many = tname.endswith("[]")
        if name.endswith("!"):
            if many:
                required.append((element, Annotated[list[base], _NON_EMPTY]))  # type: ignore[valid-type]
            elif base is str:
                required.append((element, Annotated[str, _NON_EMPTY]))
            else:
                required.append((element, base))
        else:
            optional.append((element, (list[base] if many else base) | None, None))  # type: ignore[valid-type]
    struct = msgspec.defstruct(f"{rtype}Check", [*required, *optional])
    return msgspec.json.Decoder(struct)


@cache
def _decoders() -> dict[str, msgspec.json.Decoder[Any]]:
    return {rtype: _decoder(rtype, spec) for rtype, spec in rule_spec().items()}


def passes(line: bytes, resource_type: str) -> bool:
    """True when the line meets every structural rule for its type (unknown types: the common)."""
    decoder = _DECODERS.get(resource_type) or _DECODERS["*"]
    try:
        decoder.decode(line)
    except msgspec.ValidationError:
        return False
    return True


_DECODERS = _decoders()
