"""Structural checks that decide acceptance on the landing's critical path.

They look only at the elements the pipeline reads (structure_rules.yaml): presence where FHIR
requires it, JSON type, and date syntax with a calendar check. Full FHIR validation is slower by
an order of magnitude and runs beside the landing (validation.py); it never moves a resource.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

# Reason codes of raw.quarantine; the data-quality layer checks that no other code appears.
REASONS: dict[str, str] = {
    "empty_line": "the line is empty",
    "invalid_utf8": "the line is not valid UTF-8",
    "not_json": "the line is not valid JSON",
    "not_an_object": "the JSON value is not an object",
    "missing_resource_type": "resourceType is missing or not a string",
    "unknown_resource_type": "resourceType is not a FHIR R4 resource type",
    "invalid_id": "id is missing or not a valid FHIR id",
    "missing_element": "an element FHIR requires, and the pipeline reads, is missing",
    "wrong_type": "an element the pipeline reads has the wrong JSON type",
    "invalid_date": "a date element the pipeline reads is not a valid FHIR date",
    "not_a_bundle": "a line of a deletion file is not a FHIR Bundle with entries",
    "invalid_deletion": "a deletion entry has no request.method DELETE or no Type/id url",
    "too_deep": "the JSON nests deeper than 254 levels",
    "duplicate_key": "a JSON object repeats a key, so one of its values would be lost",
}

ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# FHIR's date/dateTime/instant syntax, read as RFC 3339 reads a full date-time: "T", "t" or a
# space before the time, "Z" or "z", an offset with or without its colon, any fraction. Those
# variants are unambiguous and every reader downstream takes them; full validation still flags
# them. Month and day ranges are in the patterns; only days 29-31 need a calendar look-up.
_Y, _M, _D = r"(?!0000)(\d{4})", r"(0[1-9]|1[0-2])", r"(0[1-9]|[12]\d|3[01])"
_TIME = r"[Tt ](?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d+)?"
_TZ = r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):?[0-5]\d)"
_DATE_RE = re.compile(rf"{_Y}(?:-{_M}(?:-{_D})?)?")
_DATETIME_RE = re.compile(rf"{_Y}(?:-{_M}(?:-{_D}(?:{_TIME}{_TZ})?)?)?")
_INSTANT_RE = re.compile(rf"{_Y}-{_M}-{_D}{_TIME}{_TZ}")


@dataclass(frozen=True)
class Problem:
    reason: str  # a key of REASONS
    element: str | None  # dotted path, e.g. valueQuantity.value
    detail: str  # words for the data manager


def _calendar_ok(m: re.Match[str]) -> bool:
    day = m.group(3)
    if day is None or day < "29":
        return True
    try:
        dt.date(int(m.group(1)), int(m.group(2)), int(day))
    except ValueError:
        return False
    return True


Checker = Callable[[Any, str], "Problem | None"]


def _date_checker(regex: re.Pattern[str], name: str) -> Checker:
    def check(value: Any, path: str) -> Problem | None:
        if not isinstance(value, str):
            return Problem(
                "wrong_type", path, f"{path} must be a {name} string, got {_jtype(value)}"
            )
        m = regex.fullmatch(value)
        if m is None or not _calendar_ok(m):
            # The value itself is not repeated: it may be a birth date (PHI).
            why = "impossible calendar date" if m is not None else "bad syntax"
            return Problem("invalid_date", path, f"{path} is not a valid FHIR {name} ({why})")
        return None

    return check


def _jtype(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _primitive(pytypes: tuple[type, ...], name: str, *, allow_bool: bool = False) -> Checker:
    def check(value: Any, path: str) -> Problem | None:
        if isinstance(value, pytypes) and (allow_bool or not isinstance(value, bool)):
            return None
        return Problem("wrong_type", path, f"{path} must be a {name}, got {_jtype(value)}")

    return check


_string = _primitive((str,), "string")
_boolean = _primitive((bool,), "boolean", allow_bool=True)
_decimal = _primitive((int, float), "number")
_integer = _primitive((int,), "integer")
_object = _primitive((dict,), "object")


def _complex(fields: dict[str, Checker], *, list_fields: tuple[str, ...] = ()) -> Checker:
    """A data type: an object whose listed members are checked, list members item by item."""

    def check(value: Any, path: str) -> Problem | None:
        if not isinstance(value, dict):
            return Problem("wrong_type", path, f"{path} must be an object, got {_jtype(value)}")
        for key, sub in fields.items():
            v = value.get(key)
            if v is None:
                continue
            if key in list_fields:
                if not isinstance(v, list):
                    return Problem(
                        "wrong_type",
                        f"{path}.{key}",
                        f"{path}.{key} must be an array, got {_jtype(v)}",
                    )
                for i, item in enumerate(v):
                    problem = sub(item, f"{path}.{key}[{i}]")
                    if problem:
                        return problem
            else:
                problem = sub(v, f"{path}.{key}")
                if problem:
                    return problem
        return None

    return check


_date = _date_checker(_DATE_RE, "date")
_datetime = _date_checker(_DATETIME_RE, "dateTime")
_instant = _date_checker(_INSTANT_RE, "instant")
_coding = _complex({"system": _string, "code": _string, "display": _string})
_EXPLAIN: dict[str, Checker] = {
    "string": _string,
    "code": _string,
    "id": _string,
    "uri": _string,
    "boolean": _boolean,
    "decimal": _decimal,
    "integer": _integer,
    "date": _date,
    "dateTime": _datetime,
    "instant": _instant,
    "object": _object,
    "Coding": _coding,
    "CodeableConcept": _complex({"coding": _coding, "text": _string}, list_fields=("coding",)),
    "Reference": _complex({"reference": _string, "display": _string}),
    "Period": _complex({"start": _datetime, "end": _datetime}),
    "Quantity": _complex(
        {
            "value": _decimal,
            "unit": _string,
            "system": _string,
            "code": _string,
            "comparator": _string,
        }
    ),
    "Identifier": _complex({"system": _string, "value": _string}),
    "Extension": _complex({"url": _string}),
    "Meta": _complex({"versionId": _string, "lastUpdated": _instant}),
}

# Fast predicates for the hot path: True when the value is fine. Only when one says False does
# the slower explaining checker above run, to name the element and the problem.
Predicate = Callable[[Any], bool]


def _is_str(v: Any) -> bool:
    return type(v) is str


def _is_number(v: Any) -> bool:
    t = type(v)
    return t is int or t is float


def _date_ok(regex: re.Pattern[str]) -> Predicate:
    def ok(v: Any) -> bool:
        if type(v) is not str:
            return False
        m = regex.fullmatch(v)
        return m is not None and _calendar_ok(m)

    return ok


def _members_ok(fields: dict[str, Predicate], list_fields: tuple[str, ...] = ()) -> Predicate:
    def ok(v: Any) -> bool:
        if type(v) is not dict:
            return False
        for key, item in v.items():
            pred = fields.get(key)
            if pred is None or item is None:
                continue
            if key in list_fields:
                if type(item) is not list:
                    return False
                for element in item:
                    if not pred(element):
                        return False
            elif not pred(item):
                return False
        return True

    return ok


_datetime_ok = _date_ok(_DATETIME_RE)
_instant_ok = _date_ok(_INSTANT_RE)
_coding_ok = _members_ok({"system": _is_str, "code": _is_str, "display": _is_str})
_OK: dict[str, Predicate] = {
    "string": _is_str,
    "code": _is_str,
    "id": _is_str,
    "uri": _is_str,
    "boolean": lambda v: type(v) is bool,
    "decimal": _is_number,
    "integer": lambda v: type(v) is int,
    "date": _date_ok(_DATE_RE),
    "dateTime": _datetime_ok,
    "instant": _instant_ok,
    "object": lambda v: type(v) is dict,
    "Coding": _coding_ok,
    "CodeableConcept": _members_ok({"coding": _coding_ok, "text": _is_str}, ("coding",)),
    "Reference": _members_ok({"reference": _is_str, "display": _is_str}),
    "Period": _members_ok({"start": _datetime_ok, "end": _datetime_ok}),
    "Quantity": _members_ok(
        {
            "value": _is_number,
            "unit": _is_str,
            "system": _is_str,
            "code": _is_str,
            "comparator": _is_str,
        }
    ),
    "Identifier": _members_ok({"system": _is_str, "value": _is_str}),
    "Extension": _members_ok({"url": _is_str}),
    "Meta": _members_ok({"versionId": _is_str, "lastUpdated": _instant_ok}),
}
TYPES: tuple[str, ...] = tuple(_EXPLAIN)


@dataclass(frozen=True)
class TypeRules:
    """Per resource type: a predicate and an explaining checker per element; what FHIR requires."""

    ok: dict[str, Predicate]
    explain: dict[str, Checker]
    required: tuple[str, ...]


@cache
def _all_ok(pred: Predicate) -> Predicate:
    def ok(v: Any) -> bool:
        return type(v) is list and all(pred(item) for item in v)

    return ok


def _list_of(check: Checker) -> Checker:
    def check_list(value: Any, path: str) -> Problem | None:
        if not isinstance(value, list):
            return Problem("wrong_type", path, f"{path} must be an array, got {_jtype(value)}")
        for i, item in enumerate(value):
            problem = check(item, f"{path}[{i}]")
            if problem:
                return problem
        return None

    return check_list


@cache
def rule_spec() -> dict[str, dict[str, str]]:
    """structure_rules.yaml per resource type, the common rules ("*") merged into each."""
    text = resources.files("rescue_pipeline.raw").joinpath("structure_rules.yaml").read_text()
    raw: dict[str, dict[str, str]] = yaml.safe_load(text)
    common = raw.pop("*", {})
    return {rtype: common | spec for rtype, spec in raw.items()} | {"*": common}


@cache
def _rules() -> dict[str, TypeRules]:
    return {rtype: _compile(spec) for rtype, spec in rule_spec().items()}


def _compile(spec: dict[str, str]) -> TypeRules:
    ok: dict[str, Predicate] = {}
    explain: dict[str, Checker] = {}
    required = []
    for name, tname in spec.items():
        base = tname.removesuffix("[]")
        if base not in _EXPLAIN:
            raise ValueError(f"structure_rules.yaml: {name}: unknown type {tname!r}")
        element = name.removesuffix("!")
        many = tname.endswith("[]")
        ok[element] = _all_ok(_OK[base]) if many else _OK[base]
        explain[element] = _list_of(_EXPLAIN[base]) if many else _EXPLAIN[base]
        if name.endswith("!"):
            required.append(element)
    return TypeRules(ok, explain, tuple(required))


def check_resource(resource: dict[str, Any], resource_type: str) -> Problem | None:
    """First structural problem of a parsed resource whose resourceType is known, or None.

    Hot path: it walks the resource's own elements (a handful) with fast predicates, and runs the
    explaining checker only for an element that fails.
    """
    rules = _rules()
    typed = rules.get(resource_type) or rules["*"]
    for name in typed.required:
        value = resource.get(name)
        if value is None or value == [] or value == "":
            return Problem("missing_element", name, f"{name} is required for {resource_type}")
    predicates = typed.ok
    for name, value in resource.items():
        ok = predicates.get(name)
        if ok is not None and value is not None and not ok(value):
            return typed.explain[name](value, name) or Problem(
                "wrong_type", name, f"{name} is not valid"
            )
    return None
