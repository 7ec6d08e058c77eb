"""Full FHIR validation of landed versions, kept off the landing's critical path.

pydantic models of fhir.resources run at ~8-10k resources/s per core, far below the landing's
rate, so acceptance is decided by the structural checks alone and this step runs after (or beside)
the landing: it validates each distinct version exactly once (an anti-join on
raw.version_validation), records findings against the accepted version and never moves it.
fhir.resources has no 4.0.1 package; its R4B (4.3.0) models are the nearest and accept R4
clinical resources. A type R4B does not define (R4's MedicinalProduct*, Substance*...) is
recorded as `not_in_r4b`, not as invalid FHIR.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import version
from typing import Any

import duckdb
import pyarrow as pa

BATCH = 5_000

_PENDING = """
SELECT v.site_id, v.resource_type, v.resource_id, v.payload_sha256, v.payload::VARCHAR AS payload
FROM raw.fhir_resource_versions v
ANTI JOIN raw.version_validation r USING (site_id, payload_sha256)
WHERE $site IS NULL OR v.site_id = $site
"""
_SCHEMA = pa.schema(
    [
        ("site_id", pa.string()),
        ("resource_type", pa.string()),
        ("resource_id", pa.string()),
        ("payload_sha256", pa.string()),
        ("outcome", pa.string()),
        ("findings", pa.string()),
    ]
)


@dataclass
class ValidationResult:
    validated: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.validated / self.seconds if self.seconds else 0.0


@cache
def validator_name() -> str:
    return f"fhir.resources {version('fhir.resources')} (R4B models)"


@cache
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return None


def validate_payload(resource_type: str, payload: str) -> tuple[str, str | None]:
    """(outcome, findings) for one version; findings name elements, never their values."""
    from pydantic import ValidationError

    model = _model(resource_type)
    if model is None:
        return "not_in_r4b", f"{resource_type} is not defined by the R4B models; not validated"
    try:
        model.model_validate_json(payload)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_input=False, include_url=False):
            loc = ".".join(str(p) for p in error["loc"]) or resource_type
            lines.append(f"{loc}: {error['msg']}")
        return "invalid", "\n".join(lines)
    except ValueError as exc:  # fhir.resources raises plain ValueError for some checks
        return "invalid", str(exc).splitlines()[0][:500]
    return "valid", None


def validate_pending(
    con: duckdb.DuckDBPyConnection,
    *,
    site_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ValidationResult:
    """Validate every stored version not validated yet; commit per batch (resumable)."""
    started = time.perf_counter()
    result = ValidationResult()
    # A second cursor streams the pending versions while the first one writes results.
    reader = con.cursor().sql(_PENDING, params={"site": site_id}).to_arrow_reader(BATCH)
    validator = validator_name()
    for record_batch in reader:
        chunk = record_batch.to_pylist()
        out: dict[str, list[Any]] = {name: [] for name in _SCHEMA.names}
        for row in chunk:
            outcome, findings = validate_payload(row["resource_type"], row["payload"])
            result.outcomes[outcome] += 1
            for key in ("site_id", "resource_type", "resource_id", "payload_sha256"):
                out[key].append(row[key])
            out["outcome"].append(outcome)
            out["findings"].append(findings)
        batch = pa.Table.from_pydict(out, schema=_SCHEMA)
        con.register("validation_batch", batch)
        con.execute(
            "INSERT INTO raw.version_validation SELECT *, $validator, $now FROM validation_batch "
            "ON CONFLICT DO NOTHING",
            {"validator": validator, "now": dt.datetime.now(dt.UTC)},
        )
        con.unregister("validation_batch")
        result.validated += len(chunk)
        if progress:
            progress(len(chunk))
    result.seconds = time.perf_counter() - started
    return result
