"""Regenerate ``fhir_r4b_elements.json`` from the ``fhir.resources.R4B`` pydantic models.

Run ``python -m rescue_pipeline.viewdef.generate_elements`` after upgrading fhir.resources.
The compiler reads the small JSON file instead of importing ~190 model modules at run time.

Format: ``{type: {element: spec}}`` where spec is ``"HumanName*"`` (a list of HumanName),
``"code"`` (one code) or, for a choice element ``value[x]`` stored under ``value``,
``"Quantity|string|..."`` (the allowed types; each variant ``valueQuantity`` is listed too).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import typing
from pathlib import Path

OUT = Path(__file__).with_name("fhir_r4b_elements.json")
# fhir.resources names two primitive constraint classes differently from FHIR.
_RENAMES = {"encodedBytes": "base64Binary", "uuidVersion": "uuid"}


def _type_name(annotation: object) -> tuple[str, bool]:
    """(FHIR type name, is_list) of a pydantic field annotation of an R4B model."""
    is_list = False
    ann = annotation
    while True:
        origin = typing.get_origin(ann)
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if origin in (list, typing.List):  # noqa: UP006 - fhir.resources uses typing.List
            is_list = True
            ann = args[0]
        elif origin is typing.Annotated:
            meta = ann.__metadata__  # type: ignore[attr-defined]
            name = type(meta[0]).__name__
            name = name[0].lower() + name[1:]
            return _RENAMES.get(name, name), is_list
        elif args and origin is not None:
            ann = args[0]
        else:
            break
    if ann is bool:
        return "boolean", is_list
    name = getattr(ann, "__name__", str(ann))
    if name.endswith("Type"):
        name = name[: -len("Type")]
    return name, is_list


def build() -> dict[str, dict[str, str]]:
    """Walk every R4B model class and record its elements' types and cardinality."""
    import fhir.resources.R4B as r4b
    from pydantic import BaseModel

    out: dict[str, dict[str, str]] = {}
    for mod_info in pkgutil.iter_modules(r4b.__path__):
        if mod_info.name.startswith(("fhirtypes", "fhirprimitive")):
            continue
        module = importlib.import_module(f"fhir.resources.R4B.{mod_info.name}")
        for obj in vars(module).values():
            if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
                continue
            if obj.__module__ != module.__name__ or obj.__name__ in out:
                continue
            elements: dict[str, str] = {}
            choices: dict[str, list[str]] = {}
            for field in obj.model_fields.values():
                extra = field.json_schema_extra
                if not isinstance(extra, dict) or not extra.get("element_property"):
                    continue
                name = str(field.alias)
                tname, is_list = _type_name(field.annotation)
                elements[name] = tname + ("*" if is_list else "")
                base = extra.get("one_of_many")
                if isinstance(base, str):
                    choices.setdefault(base, []).append(tname)
            for base, types in choices.items():
                elements[base] = "|".join(types)
            out[obj.__name__] = elements
    return dict(sorted(out.items()))


def main() -> None:
    """Write the JSON data file beside this module."""
    data = build()
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(data)} types)")


if __name__ == "__main__":
    main()
