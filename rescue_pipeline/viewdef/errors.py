"""Errors of the ViewDefinition compiler, apart so every module can raise them."""

from __future__ import annotations


class ViewError(ValueError):
    """The ViewDefinition is invalid (bad structure, name, FHIRPath syntax, undefined constant)."""


class UnsupportedFeature(ViewError):
    """The view is valid SQL on FHIR, but uses a feature this compiler does not translate.

    Raised at compile time, so a view never runs as silently wrong SQL.
    """
