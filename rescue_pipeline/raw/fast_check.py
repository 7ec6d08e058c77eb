"""The structural checks of structure_rules.yaml, compiled to msgspec decoders: the fast path.

msgspec validates a JSON line against typed structs in C, several times faster than walking the
parsed dict in Python. It only answers "fine or not": when a line fails, structure.py's checker
runs on it to name the element and the reason. Both read the same rules file, and a test holds
them to the same verdicts.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

import msgspec

from rescue_pipeline.raw.structure import rule_spec

# Calendar-aware FHIR date patterns (month lengths and leap years in the pattern itself), so the
# fast path rejects 2024-02-30 as the slow path does. \Z, not $: $ would accept a final newline.
_Y = r"(?!0000)\d{4}"
_LEAP = r"(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_MD = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
    r"|02-(?:0[1-9]|1\d|2[0-8]))"
)
_FULL = rf"(?:{_Y}-{_MD}|{_LEAP}-02-29)"
_TIME = r"T(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d{1,9})?"
_TZ = r"(?:Z|[+-](?:0\d|1[0-3]):[0-5]\d|[+-]14:00)"
DATE_PATTERN = rf"^(?:{_Y}(?:-(?:0[1-9]|1[0-2]))?|{_FULL})\Z"
DATETIME_PATTERN = rf"^(?:{_Y}(?:-(?:0[1-9]|1[0-2]))?|{_FULL}(?:{_TIME}{_TZ})?)\Z"
INSTANT_PATTERN = rf"^{_FULL}{_TIME}{_TZ}\Z"


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
    "date": Annotated[str, msgspec.Meta(pattern=DATE_PATTERN)],
    "dateTime": Annotated[str, msgspec.Meta(pattern=DATETIME_PATTERN)],
    "instant": Annotated[str, msgspec.Meta(pattern=INSTANT_PATTERN)],
    "object": dict,
    "Coding": _Coding,
    "CodeableConcept": _struct(
        "CodeableConcept",
        {"coding": list[_Coding], "text": str},  # type: ignore[valid-type]
    ),
    "Reference": _struct("Reference", {"reference": str, "display": str}),
    "Period": _struct(
        "Period",
        {
            "start": Annotated[str, msgspec.Meta(pattern=DATETIME_PATTERN)],
            "end": Annotated[str, msgspec.Meta(pattern=DATETIME_PATTERN)],
        },
    ),
    "Quantity": _struct(
        "Quantity", {"value": float, "unit": str, "system": str, "code": str, "comparator": str}
    ),
    "Identifier": _struct("Identifier", {"system": str, "value": str}),
    "Extension": _struct("Extension", {"url": str}),
    "Meta": _struct(
        "Meta",
        {"versionId": str, "lastUpdated": Annotated[str, msgspec.Meta(pattern=INSTANT_PATTERN)]},
    ),
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
