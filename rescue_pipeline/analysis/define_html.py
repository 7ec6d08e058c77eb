"""define.html: the export's metadata rendered for reviewers to open in a browser.

CDISC's stylesheet for define.xml is not shipped with the standard's schemas, so this page is our
own rendering of the same define document (datasets, variables with origin and derivation,
value-level metadata, codelists with their NCI codes, comments and the derivation rules). It is
one self-contained, autoescaped file: no script, no external resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape


def render(document: Mapping[str, Any]) -> str:
    """The HTML page of `document` (see define.define_document)."""
    env = Environment(
        loader=PackageLoader("rescue_pipeline.analysis", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    codelists = {c["oid"]: c for c in document["codelists"]}
    return env.get_template("define.html.j2").render(doc=document, codelists=codelists)
