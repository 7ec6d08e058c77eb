"""Deletions from REST type-level history on a small scripted server: what a real server cannot
be made to show (no history-type in its CapabilityStatement, a 4xx or 5xx on history, a history
longer than the bounds). None of them fails the load."""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest

from rescue_pipeline.config import FhirSource, SiteConfig
from rescue_pipeline.extract.auth import NoAuth
from rescue_pipeline.extract.http import FhirHttpClient, RetryPolicy
from rescue_pipeline.extract.watermarks import advance_marks, read_marks
from rescue_pipeline.site_load import fetch_and_land
from rescue_pipeline.warehouse.database import open_work_db
from tests.extract.conftest import FakeTime, Reply, ScriptedServer

SITE = "site-h"
MARK = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def patient(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "1", "lastUpdated": "2026-10-20T10:00:00.000Z"},
    }


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    entries = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def history(*entries: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {"resourceType": "Bundle", "type": "history", "link": links, "entry": list(entries)}


def deleted(pid: str, when: str, version: str = "2") -> dict[str, Any]:
    return {
        "fullUrl": f"http://x.example/fhir/Patient/{pid}",
        "request": {"method": "DELETE", "url": f"Patient/{pid}"},
        "response": {"status": "204 No Content", "etag": f'W/"{version}"', "lastModified": when},
    }


def capability(*interactions: str) -> dict[str, Any]:
    resource = {"type": "Patient", "interaction": [{"code": c} for c in interactions]}
    return {"resourceType": "CapabilityStatement", "rest": [{"resource": [resource]}]}


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_work_db(tmp_path / "rescue.work.duckdb")
    connection.execute("SET TimeZone = 'UTC'")
    yield connection
    connection.close()


def load(
    server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    load_id: str = "L1",
    **options: Any,
) -> None:
    source = FhirSource(
        base_url=f"{server.url}/fhir", types=("Patient",), overlap_seconds=60, **options
    )
    client = FhirHttpClient(
        SITE,
        NoAuth(),
        policy=RetryPolicy(max_attempts=2),
        sleep=FakeTime().sleep,
        rng=random.Random(2),
    )
    with client:
        fetch_and_land(
            con, SiteConfig(id=SITE, source=source), load_id, work_dir=tmp_path, client=client
        )


def current(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute("SELECT resource_id FROM raw.fhir_resources ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def paths(server: ScriptedServer, path: str) -> list[dict[str, list[str]]]:
    return [parse_qs(urlsplit(s.path).query) for s in server.seen if s.path.split("?")[0] == path]


def test_history_deletions_are_recorded_and_the_mark_advances(
    scripted_server: ScriptedServer, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    advance_marks(con, SITE, {"Patient": MARK}, load_id="L0")
    scripted_server.on("/fhir/metadata", Reply(200, capability("read", "history-type")))
    scripted_server.on("/fhir/Patient", Reply(200, searchset(patient("p1"), patient("p2"))))
    page2 = f"{scripted_server.url}/fhir/Patient/_history?_count=200&_offset=1"
    scripted_server.on(
        "/fhir/Patient/_history",
        Reply(200, history(deleted("p1", "2026-11-02T10:00:00.000Z"), next_url=page2)),
        Reply(
            200,
            history(
                {"resource": patient("p2"), "request": {"method": "PUT", "url": "Patient/p2"},
                 "response": {"status": "200 OK", "lastModified": "2026-11-02T11:00:00Z"}},
                {"fullUrl": "Patient/p9", "response": {"status": "410 Gone"}},
            ),
        ),
    )  # fmt: skip
    load(scripted_server, con, tmp_path)
    assert current(con) == ["p2"]
    rows = con.execute(
        "SELECT resource_id, deleted_at, deleted_at_basis, version_id, line_number, source "
        "FROM raw.deletions ORDER BY 1"
    ).fetchall()
    label = "rest/L1/deleted/Patient.ndjson"
    assert rows[0] == ("p1", dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC), "entry", "2", 1, label)
    # a 410 entry with no time of its own, on a page with none: dated when received
    assert (rows[1][0], *rows[1][2:]) == ("p9", "received", None, 2, label)
    queries = paths(scripted_server, "/fhir/Patient/_history")
    assert [q["_since"] for q in queries] == [["2026-11-01T00:00:00.000Z"]] * 2
    # the latest change the history showed (11:00), minus the overlap window
    marks = read_marks(con, SITE, of="deletions")
    assert marks == {"Patient": dt.datetime(2026, 11, 2, 10, 59, tzinfo=dt.UTC)}
    assert con.execute(
        "SELECT resource_type, received, recorded, quarantined FROM raw.deletion_loads"
    ).fetchall() == [("Patient", 2, 2, 0)]


def test_a_type_without_history_type_is_not_asked_and_the_load_goes_on(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    advance_marks(con, SITE, {"Patient": MARK}, load_id="L0")
    scripted_server.on("/fhir/metadata", Reply(200, capability("read", "search-type")))
    scripted_server.on("/fhir/Patient", Reply(200, searchset(patient("p1"))))
    caplog.set_level(logging.WARNING, logger="rescue_pipeline.extract.history")
    load(scripted_server, con, tmp_path)
    assert scripted_server.hits("/fhir/Patient/_history") == 0
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == (
        f"site {SITE}: type-level history unsupported for Patient (no history-type interaction "
        "in its CapabilityStatement): deletions at the site are not seen for these types; the "
        "load carries on"
    )
    assert current(con) == ["p1"]
    assert read_marks(con, SITE, of="deletions") == {}


@pytest.mark.parametrize("status", [400, 404, 405])
def test_a_4xx_on_history_means_unsupported_logged_once_and_the_load_goes_on(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
):
    advance_marks(con, SITE, {"Patient": MARK}, load_id="L0")
    scripted_server.on("/fhir/metadata", Reply(404, b""))  # no CapabilityStatement: try it
    scripted_server.on("/fhir/Patient", Reply(200, searchset(patient("p1"))))
    outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "no history here"}]}
    scripted_server.on("/fhir/Patient/_history", Reply(status, outcome))
    caplog.set_level(logging.WARNING, logger="rescue_pipeline.extract.history")
    load(scripted_server, con, tmp_path)
    assert scripted_server.hits("/fhir/Patient/_history") == 1  # a 4xx is not retried
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"site {SITE}: type-level history unsupported for Patient (site {SITE}: GET " in warning
    assert f"HTTP {status}" in warning and "no history here" in warning
    assert current(con) == ["p1"]


def test_a_server_error_on_history_is_a_warning_and_the_mark_stays(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    advance_marks(con, SITE, {"Patient": MARK}, load_id="L0")
    advance_marks(con, SITE, {"Patient": MARK}, load_id="L0", of="deletions")
    scripted_server.on("/fhir/metadata", Reply(200, capability("history-type")))
    scripted_server.on("/fhir/Patient", Reply(200, searchset(patient("p1"))))
    scripted_server.on("/fhir/Patient/_history", Reply(500, b"boom"))
    caplog.set_level(logging.WARNING, logger="rescue_pipeline.extract.history")
    load(scripted_server, con, tmp_path)
    assert scripted_server.hits("/fhir/Patient/_history") == 2  # retried, then given up
    assert any("Patient history not read this time" in r.getMessage() for r in caplog.records)
    assert current(con) == ["p1"]
    assert read_marks(con, SITE, of="deletions") == {"Patient": MARK}


def test_history_past_its_page_bound_keeps_what_it_read_and_the_mark_stays(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    advance_marks(con, SITE, {"Patient": MARK}, load_id="L0")
    scripted_server.on("/fhir/metadata", Reply(200, capability("history-type")))
    scripted_server.on("/fhir/Patient", Reply(200, searchset(patient("p1"), patient("p2"))))
    url = f"{scripted_server.url}/fhir/Patient/_history"
    scripted_server.on(
        "/fhir/Patient/_history",
        Reply(200, history(deleted("p1", "2026-11-03T10:00:00Z"), next_url=f"{url}?page=2")),
        Reply(200, history(deleted("p2", "2026-11-02T10:00:00Z"), next_url=f"{url}?page=3")),
        Reply(200, history()),
    )
    caplog.set_level(logging.WARNING, logger="rescue_pipeline.extract.history")
    load(scripted_server, con, tmp_path, history_max_pages=2)
    assert scripted_server.hits("/fhir/Patient/_history") == 2
    assert current(con) == []  # both deletions read are kept
    [warning] = [r.getMessage() for r in caplog.records]
    assert "Patient history: stopped after 2 pages (history_max_pages 2)" in warning
    assert read_marks(con, SITE, of="deletions") == {}


def test_the_first_load_of_a_type_reads_no_history_and_starts_the_mark(
    scripted_server: ScriptedServer, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    scripted_server.on("/fhir/Patient", Reply(200, searchset(patient("p1"))))
    load(scripted_server, con, tmp_path)
    assert scripted_server.hits("/fhir/metadata") == 0
    assert scripted_server.hits("/fhir/Patient/_history") == 0
    search = read_marks(con, SITE)
    assert read_marks(con, SITE, of="deletions") == search
