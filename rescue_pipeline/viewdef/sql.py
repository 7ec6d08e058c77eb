"""Safe SQL text pieces: literals, identifiers and the SQL types of view columns."""

from __future__ import annotations

import re

from rescue_pipeline.viewdef.cardinality import INTEGER_TYPES, PRIMITIVE_TYPES
from rescue_pipeline.viewdef.errors import UnsupportedFeature, ViewError

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESOURCE_RE = re.compile(r"[A-Z][A-Za-z]+")
TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}")


def string(value: str) -> str:
    """A SQL string literal; quotes are doubled, NUL is refused (DuckDB strings cannot hold it)."""
    if "\x00" in value:
        raise ViewError("string literals may not contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


def checked_name(name: object, what: str = "column name") -> str:
    """``name`` if it is a plain identifier (``NAME_RE``), else a ViewError."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ViewError(f"invalid {what} {name!r}: must match {NAME_RE.pattern}")
    return name


def checked_resource(name: object) -> str:
    """``name`` if it looks like a FHIR resource type (``RESOURCE_RE``), else a ViewError."""
    if not isinstance(name, str) or not RESOURCE_RE.fullmatch(name):
        raise ViewError(f"invalid resource type {name!r}: must match {RESOURCE_RE.pattern}")
    return name


def ident(name: object, what: str = "column name") -> str:
    """A double-quoted SQL identifier, after checking it against ``NAME_RE``."""
    return f'"{checked_name(name, what)}"'


def table(name: str) -> str:
    """A possibly schema-qualified table name, each part quoted."""
    if not isinstance(name, str) or not TABLE_RE.fullmatch(name):
        raise ViewError(f"invalid source table {name!r}")
    return ".".join(f'"{part}"' for part in name.split("."))


def column_sql_type(fhir_type: str | None) -> str:
    """The DuckDB type of a column of FHIR type ``fhir_type`` (dates stay VARCHAR: partial dates
    and offsets must survive until the core layer parses them)."""
    if fhir_type is None:
        return "VARCHAR"
    if fhir_type in INTEGER_TYPES:
        return "BIGINT"
    if fhir_type == "decimal":
        return "DOUBLE"
    if fhir_type == "boolean":
        return "BOOLEAN"
    if fhir_type in PRIMITIVE_TYPES:
        return "VARCHAR"
    raise UnsupportedFeature(f"column type {fhir_type!r}: only FHIR primitive types are supported")
