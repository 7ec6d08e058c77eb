"""The FHIR R4 resource types: the only names a server's answer may give a file or a table.

Shared by every layer (a server's `resourceType` or a Bulk manifest's `type` is checked against
it before it names anything on disk), so it lives outside the layers.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def r4_resource_types() -> frozenset[str]:
    text = resources.files("rescue_pipeline").joinpath("r4_resource_types.json").read_text()
    return frozenset(json.loads(text)["resource_types"])


def is_r4_resource_type(name: object) -> bool:
    """True only for an exact R4 resource type name (no path, no separator, no padding)."""
    return isinstance(name, str) and name in r4_resource_types()
