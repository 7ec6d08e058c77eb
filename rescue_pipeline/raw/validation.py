"""Full FHIR validation of landed versions, kept off the landing's critical path.

pydantic models of fhir.resources run at ~8-10k resources/s per core, far below the landing's
rate, so acceptance is decided by the structural checks alone and this step runs after the
publish, in worker processes (one per processor): nothing published depends on it. It validates
each distinct version exactly once (an anti-join on raw.version_validation), records findings
against the accepted version and never moves it.
fhir.resources has no 4.0.1 package; its R4B (4.3.0) models are the nearest and accept R4
clinical resources. A type R4B does not define (R4's MedicinalProduct*, Substance*...) is
recorded as `not_in_r4b`, not as invalid FHIR.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import version
from typing import Any

import duckdb
import pyarrow as pa

from rescue_pipeline.raw.workers import available, shutdown_pools
from rescue_pipeline.raw.workers import pool as worker_pool
from rescue_pipeline.warehouse.database import quiet

BATCH = 5_000

_PENDING = """
SELECT v.site_id, v.resource_type, v.resource_id, v.payload_sha256, v.payload::VARCHAR AS payload
FROM raw.fhir_resource_versions v
ANTI JOIN raw.version_validation r USING (site_id, payload_sha256)
WHERE $site IS NULL OR v.site_id = $site
"""
_COUNT_PENDING = """
SELECT count(*) FROM raw.fhir_resource_versions v
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


def validate_batch(rows: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
    """(outcome, findings) for each (resource type, payload): a worker process's share."""
    return [validate_payload(rtype, payload) for rtype, payload in rows]


def validate_pending(
    con: duckdb.DuckDBPyConnection,
    *,
    site_id: str | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> ValidationResult:
    """Validate every stored version not validated yet; commit per batch (resumable).

    The models run in worker processes (`workers`, default one per processor when there is
    more than a batch to do) while this process reads the next batches and writes results.
    """
    started = time.perf_counter()
    result = ValidationResult()
    # A second cursor streams the pending versions while the first one writes results.
    reader = quiet(con.cursor()).sql(_PENDING, params={"site": site_id}).to_arrow_reader(BATCH)
    if workers is None:
        pending = con.execute(_COUNT_PENDING, {"site": site_id}).fetchall()[0][0]
        workers = available() if pending > BATCH and available() > 1 else 0
    validator = validator_name()
    for chunk, outcomes in _validated(reader, workers):
        out: dict[str, list[Any]] = {name: [] for name in _SCHEMA.names}
        for row, (outcome, findings) in zip(chunk, outcomes, strict=True):
            result.outcomes[outcome] += 1
            for key in ("site_id", "resource_type", "resource_id", "payload_sha256"):
                out[key].append(row[key])
            out["outcome"].append(outcome)
            out["findings"].append(findings)
        batch = pa.Table.from_pydict(out, schema=_SCHEMA)
        con.register("validation_batch", batch)
        con.execute(
            "INSERT INTO raw.version_validation SELECT *, $validator, $now FROM validation_batch",
            {"validator": validator, "now": dt.datetime.now(dt.UTC)},
        )
        con.unregister("validation_batch")
        result.validated += len(chunk)
        if progress:
            progress(len(chunk))
    result.seconds = time.perf_counter() - started
    return result


def _validated(
    reader: pa.RecordBatchReader, workers: int
) -> Iterator[tuple[list[dict[str, Any]], list[tuple[str, str | None]]]]:
    """Each batch of pending versions with its outcomes, in order: inline, or with a few
    batches in flight in the worker processes (memory stays bounded)."""
    if workers <= 0:
        for record_batch in reader:
            chunk = record_batch.to_pylist()
            yield chunk, validate_batch([(r["resource_type"], r["payload"]) for r in chunk])
        return
    executor = worker_pool(workers)
    in_flight: deque[tuple[list[dict[str, Any]], Future[list[tuple[str, str | None]]]]] = deque()
    try:
        for record_batch in reader:
            chunk = record_batch.to_pylist()
            rows = [(r["resource_type"], r["payload"]) for r in chunk]
            for r in chunk:
                del r["payload"]  # the worker has it; the result row needs only the keys
            in_flight.append((chunk, executor.submit(validate_batch, rows)))
            if len(in_flight) > 2 * workers:
                done, future = in_flight.popleft()
                yield done, future.result()
        while in_flight:
            done, future = in_flight.popleft()
            yield done, future.result()
    except BaseException:
        for _, future in in_flight:
            future.cancel()
        shutdown_pools()  # a worker may have died: start afresh next time
        raise
