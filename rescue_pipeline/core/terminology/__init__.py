"""Value sets, drug attributes, unit conversions (value_sets.yaml) and the sites' concept maps,
loaded into the `terminology` schema of the working database for the core SQL to join on.

Data, not code: a reviewer checks every code in one file. A site-local code is resolved through
the site's concept_map in sites.yaml to a standard code, then through the value sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from rescue_pipeline.config import SiteConfig


@cache
def value_sets() -> dict[str, Any]:
    text = resources.files("rescue_pipeline.core.terminology").joinpath("value_sets.yaml")
    data: dict[str, Any] = yaml.safe_load(text.read_text("utf-8"))
    return data


def _codes(
    section: dict[str, list[list[str]]], systems: dict[str, str]
) -> list[tuple[str, str, str]]:
    return [
        (name, systems[alias], str(code))
        for name, codes in section.items()
        for alias, code in codes
    ]


def icd_key(code: str) -> str:
    """An ICD code as matched: upper case, trimmed, no dot (C57.00, c57.00 and C5700 are one).

    The core SQL (00_stage.sql) normalises the codes sites send the same way."""
    return code.strip().upper().replace(".", "")


def _columns(rows: Sequence[tuple[str, ...]], names: tuple[str, ...]) -> pa.Table:
    return pa.table(
        {n: [r[i] for r in rows] for i, n in enumerate(names)},
        schema=pa.schema([(n, pa.string()) for n in names]),
    )


def load(con: duckdb.DuckDBPyConnection, sites: Iterable[SiteConfig]) -> None:
    """(Re)create the terminology tables; called at the start of every core build."""
    vs = value_sets()
    systems: dict[str, str] = vs["systems"]
    families = {systems[alias]: family for alias, family in vs["hierarchical_systems"].items()}
    concepts = _codes(vs["concepts"], systems)
    exact = [c for c in concepts if c[1] not in families]
    roots = sorted({(c, families[s], icd_key(k)) for c, s, k in concepts if s in families})
    answers = _codes(vs["answers"], systems)
    products = vs["drug_products"]
    tables: dict[str, pa.Table] = {
        # codes of systems matched exactly (SNOMED CT, LOINC, ...)
        "concept_codes": _columns(exact, ("concept", "system", "code")),
        # roots of hierarchies (ICD-10, ICD-10-CM), normalised: a code matches a root that is
        # one of its prefixes, under any system of the family
        "concept_roots": _columns(roots, ("concept", "family", "root")),
        "hierarchical_systems": _columns(sorted(families.items()), ("system", "family")),
        "standard_diagnosis_systems": _columns(
            [(systems[a],) for a in vs["standard_diagnosis_systems"]], ("system",)
        ),
        "drug_products": _columns(
            [
                (systems["rxnorm"], str(code), str(p["ingredient"]), p["tty"], p["name"])
                for code, p in products.items()
            ],
            ("system", "code", "rxnorm", "tty", "name"),
        ),
        "answer_codes": pa.table(
            {
                "answer": [a for a, _, _ in answers],
                "system": [s for _, s, _ in answers],
                "code": [k for _, _, k in answers],
            }
        ),
        "status_as_response": pa.table(
            {
                "status": list(vs["status_as_response"]),
                "response": list(vs["status_as_response"].values()),
            }
        ),
        "figo_stage": pa.table(
            {"code": list(vs["figo_stage"]), "stage": list(vs["figo_stage"].values())}
        ),
        "drugs": pa.table(
            {
                "rxnorm": [str(k) for k in vs["drugs"]],
                "name": [d["name"] for d in vs["drugs"].values()],
                "drug_class": [d["class"] for d in vs["drugs"].values()],
                "platinum": [bool(d["platinum"]) for d in vs["drugs"].values()],
                "maintenance_capable": [bool(d["maintenance"]) for d in vs["drugs"].values()],
                "system": [systems["rxnorm"]] * len(vs["drugs"]),
            }
        ),
        "ca125_units": pa.table(
            {
                "unit": list(vs["ca125_units"]),
                "factor": [float(f) for f in vs["ca125_units"].values()],
            }
        ),
        "site_concept_map": pa.table(
            {
                "site_id": [s.id for s in sites for _ in s.concept_map],
                "system": [m.system for s in sites for m in s.concept_map],
                "code": [m.code for s in sites for m in s.concept_map],
                "target_system": [m.target_system for s in sites for m in s.concept_map],
                "target_code": [m.target_code for s in sites for m in s.concept_map],
            },
            schema=pa.schema(
                [
                    (n, pa.string())
                    for n in ("site_id", "system", "code", "target_system", "target_code")
                ]
            ),
        ),
    }
    con.execute("CREATE SCHEMA IF NOT EXISTS terminology")
    for name, table in tables.items():
        con.register("terminology_source", table)
        con.execute(f"CREATE OR REPLACE TABLE terminology.{name} AS FROM terminology_source")
        con.unregister("terminology_source")


def epithelial_range() -> tuple[int, int]:
    low, high = value_sets()["epithelial_morphology"]
    return int(low), int(high)
