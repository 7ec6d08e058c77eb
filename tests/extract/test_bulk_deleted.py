"""Bulk Data `deleted` files (IG 2.0) on a small scripted HTTP server (sekmet's export writes
none): downloaded like output files, under the same origin and token rules, each deletion
recorded once, a bad line quarantined, and the deleted resource gone from the current view."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from rescue_pipeline.config import AuthConfig, BulkSource, SiteConfig
from rescue_pipeline.extract.auth import make_auth
from rescue_pipeline.extract.bulk import BulkError
from rescue_pipeline.extract.http import FhirHttpClient, RetryPolicy
from rescue_pipeline.extract.watermarks import read_marks
from rescue_pipeline.raw.landing import LoadResult
from rescue_pipeline.site_load import fetch_and_land
from rescue_pipeline.warehouse.database import open_work_db
from tests.extract.conftest import FakeTime, Reply, ScriptedServer
from tests.extract.test_bulk_faults import patient

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

SITE = "site-x"
TRANSACTION = "2026-11-20T01:00:00.000Z"
TOKEN = "tok-0123456789"


def ndjson(*lines: dict[str, Any] | bytes) -> bytes:
    return b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)


def deleted_bundle(*urls: str, **entry: Any) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": u}, **entry} for u in urls],
    }


PATIENTS = ndjson(patient("p1"), patient("p2"), patient("p3"))


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_work_db(tmp_path / "rescue.work.duckdb")
    yield connection
    connection.close()


def export(server: ScriptedServer, deleted: list[dict[str, Any]], **extra: Any) -> None:
    manifest = {
        "transactionTime": TRANSACTION,
        "request": f"{server.url}/fhir/$export?_type=Patient",
        "requiresAccessToken": True,
        "output": [{"type": "Patient", "url": f"{server.url}/files/Patient.ndjson", "count": 3}],
        "deleted": deleted,
        "error": [],
        **extra,
    }
    server.on("/fhir/$export", Reply(202, headers={"Content-Location": f"{server.url}/status/1"}))
    server.on("/status/1", Reply(200, manifest))
    server.on("/files/Patient.ndjson", Reply(200, PATIENTS))


def run(
    server: ScriptedServer, con: duckdb.DuckDBPyConnection, tmp_path: Path, fake: FakeTime
) -> LoadResult:
    auth = AuthConfig(kind="bearer", token_env="T")
    config = SiteConfig(
        id=SITE,
        source=BulkSource(
            base_url=f"{server.url}/fhir", types=("Patient",), auth=auth, keep_extract_days=1
        ),
    )
    client = FhirHttpClient(
        SITE,
        make_auth(SITE, auth, {"T": TOKEN}),
        policy=RetryPolicy(max_attempts=2),
        sleep=fake.sleep,
        clock=fake.clock,
        rng=random.Random(5),
    )
    with client:
        return fetch_and_land(
            con, config, "L1", work_dir=tmp_path, client=client, sleep=fake.sleep,
            now=lambda: dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC),
        )  # fmt: skip


def test_deleted_files_are_downloaded_recorded_and_hide_the_resources(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    url = f"{scripted_server.url}/files/deleted-1.ndjson"
    body = ndjson(
        deleted_bundle("Patient/p2"),
        deleted_bundle("Patient/p3", response={"lastModified": "2026-11-19T12:00:00Z"}),
        b"not json",
    )
    export(scripted_server, [{"type": "Bundle", "url": url, "count": 3}])
    scripted_server.on("/files/deleted-1.ndjson", Reply(200, body))
    result = run(scripted_server, con, tmp_path, fake_time)
    assert result.deletions is not None
    assert {t: (c.received, c.recorded, c.quarantined) for t, c in result.deletions.counts.items()} == {
        "Patient": (2, 2, 0), "Bundle": (1, 0, 1),
    }  # fmt: skip
    rows = con.execute(
        "SELECT resource_id, deleted_at, deleted_at_basis, source, line_number FROM raw.deletions "
        "ORDER BY resource_id"
    ).fetchall()
    assert rows == [
        ("p2", dt.datetime(2026, 11, 20, 1, tzinfo=dt.UTC), "export", url, 1),
        ("p3", dt.datetime(2026, 11, 19, 12, tzinfo=dt.UTC), "entry", url, 2),
    ]
    assert con.execute("SELECT resource_id FROM raw.fhir_resources").fetchall() == [("p1",)]
    assert con.execute(
        "SELECT source, line_number, reason, raw_bytes FROM raw.quarantine"
    ).fetchall() == [(url, 3, "not_json", b"not json")]
    sent = {s.path: s.headers.get("Authorization") for s in scripted_server.seen}
    assert sent["/files/deleted-1.ndjson"] == f"Bearer {TOKEN}"
    saved = tmp_path / "extract" / SITE / "L1" / "deleted" / "0001-Bundle.ndjson"
    assert saved.read_bytes() == body
    ledger = con.execute(
        "SELECT file_sha256 FROM ops.landed_files WHERE source = ?", [url]
    ).fetchall()
    assert ledger == [(hashlib.sha256(body).hexdigest(),)]
    assert read_marks(con, SITE) == {"Patient": dt.datetime(2026, 11, 20, 1, tzinfo=dt.UTC)}


def test_a_deleted_file_on_another_server_does_not_get_our_token(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    export(scripted_server, [{"type": "Bundle", "url": "http://files.elsewhere.example/d.ndjson"}])
    with pytest.raises(BulkError, match="on another server than base_url; our token is not sent"):
        run(scripted_server, con, tmp_path, fake_time)
    assert con.execute("SELECT count(*) FROM raw.deletions").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM raw.fhir_resource_versions").fetchall() == [(0,)]
    assert read_marks(con, SITE) == {}


def test_a_deleted_file_shorter_than_announced_fails_the_load(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    url = f"{scripted_server.url}/files/deleted-1.ndjson"
    export(scripted_server, [{"type": "Bundle", "url": url, "count": 2}])
    scripted_server.on("/files/deleted-1.ndjson", Reply(200, ndjson(deleted_bundle("Patient/p1"))))
    with pytest.raises(BulkError, match="file cut short: 1 lines received, the manifest says 2"):
        run(scripted_server, con, tmp_path, fake_time)
    assert con.execute("SELECT count(*) FROM raw.deletions").fetchall() == [(0,)]
    state = con.execute("SELECT state FROM ops.bulk_jobs").fetchall()
    assert state == [("failed",)]
