"""Element types and cardinality of FHIR R4B, from ``fhir_r4b_elements.json``.

The compiler uses them to turn ``name.family`` into one JSON path (``$.name[*].family``) when it
knows ``Patient.name`` is a list and ``HumanName.family`` is not, and to resolve choice elements
(``value.ofType(Quantity)`` -> ``valueQuantity``). The data file is generated from the
``fhir.resources.R4B`` models by ``generate_elements.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).with_name("fhir_r4b_elements.json")

# FHIR primitive types, grouped by how FHIRPath compares them.
NUMERIC_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64", "decimal"})
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
STRING_TYPES = frozenset(
    {
        "string",
        "code",
        "id",
        "uri",
        "url",
        "canonical",
        "oid",
        "uuid",
        "markdown",
        "base64Binary",
        "xhtml",
        "date",
        "dateTime",
        "instant",
        "time",
    }
)
PRIMITIVE_TYPES = NUMERIC_TYPES | STRING_TYPES | {"boolean"}


@dataclass(frozen=True)
class ElementInfo:
    """One element of a FHIR type: its type, whether it repeats, and choice types for ``[x]``."""

    type: str | None
    is_list: bool
    choices: tuple[str, ...] = ()


@cache
def _elements() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(DATA_FILE.read_text())
    return data


def is_known_type(type_name: str | None) -> bool:
    """Whether ``type_name`` is a FHIR complex type or resource we have elements for."""
    return type_name is not None and type_name in _elements()


def element(type_name: str | None, name: str) -> ElementInfo | None:
    """The element ``name`` of ``type_name``, or None when either is unknown."""
    if type_name is None:
        return None
    spec = _elements().get(type_name, {}).get(name)
    if spec is None:
        return None
    if "|" in spec:
        return ElementInfo(None, False, tuple(spec.split("|")))
    is_list = spec.endswith("*")
    tname = spec.rstrip("*")
    return ElementInfo(None if tname == "Resource" else tname, is_list)


def choice_suffix(type_name: str) -> str:
    """``Quantity`` -> ``Quantity``, ``dateTime`` -> ``DateTime``: the ``value[x]`` suffix."""
    return type_name[0].upper() + type_name[1:]
