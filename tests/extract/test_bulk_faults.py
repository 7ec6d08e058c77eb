"""Bulk export faults a real server cannot be made to show, on a small scripted HTTP server: a
manifest naming a missing file, a file cut short, a status answer that is not a manifest, a
Retry-After of an hour, error files, a bad line; and two sites where one fails and the other
lands. Each says what raw, quarantine, the watermarks and ops.bulk_jobs hold afterwards."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
import yaml

from rescue_pipeline.config import AuthConfig, BulkSource, SiteConfig, load_config
from rescue_pipeline.extract.auth import make_auth
from rescue_pipeline.extract.bulk import BulkError
from rescue_pipeline.extract.http import FhirHttpClient, RetryPolicy
from rescue_pipeline.extract.ndjson import SourceError
from rescue_pipeline.extract.watermarks import advance_marks, read_marks
from rescue_pipeline.raw.landing import LoadResult
from rescue_pipeline.site_load import SiteLoadError, fetch_and_land, load_site, work_db
from rescue_pipeline.warehouse.database import open_work_db
from tests.extract.conftest import FakeTime, Reply, ScriptedServer, Sekmet

SITE = "site-x"
T0 = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)
MARK = dt.datetime(2026, 11, 19, 1, 0, tzinfo=dt.UTC)
TRANSACTION = "2026-11-20T01:00:00.000Z"


def patient(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "1", "lastUpdated": "2026-11-19T10:00:00.000Z"},
        "gender": "female",
    }


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


PATIENTS = ndjson(patient("p1"), patient("p2"), patient("p3"))


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_work_db(tmp_path / "rescue.work.duckdb")
    advance_marks(connection, SITE, {"Patient": MARK}, load_id="L0")
    yield connection
    connection.close()


def site(server: ScriptedServer, **options: Any) -> SiteConfig:
    return SiteConfig(
        id=SITE,
        source=BulkSource(
            base_url=f"{server.url}/fhir",
            types=("Patient",),
            **{"keep_extract_days": 1, **options},  # the tests read the fetched files
        ),
    )


def manifest(server: ScriptedServer, **extra: Any) -> dict[str, Any]:
    return {
        "transactionTime": TRANSACTION,
        "request": f"{server.url}/fhir/$export?_type=Patient",
        "requiresAccessToken": True,
        "output": [{"type": "Patient", "url": f"{server.url}/files/Patient.ndjson", "count": 3}],
        "error": [],
        **extra,
    }


def script_export(server: ScriptedServer, *status: Reply) -> None:
    server.on("/fhir/$export", Reply(202, headers={"Content-Location": f"{server.url}/status/1"}))
    server.on("/status/1", *status)


def run(
    server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake: FakeTime,
    *,
    auth: AuthConfig | None = None,
    env: dict[str, str] | None = None,
    **options: Any,
) -> LoadResult:
    auth = auth or AuthConfig()
    config = site(server, auth=auth, **options)
    client = FhirHttpClient(
        SITE,
        make_auth(SITE, auth, env or {}),
        policy=RetryPolicy(max_attempts=2),
        sleep=fake.sleep,
        clock=fake.clock,
        rng=random.Random(5),
    )
    with client:
        return fetch_and_land(
            con,
            config,
            "L1",
            work_dir=tmp_path,
            client=client,
            sleep=fake.sleep,
            now=lambda: T0 + dt.timedelta(seconds=fake.now),
        )


def job(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    cursor = con.execute("SELECT * FROM ops.bulk_jobs")
    names = [d[0] for d in cursor.description]
    [row] = cursor.fetchall()
    return dict(zip(names, row, strict=True))


def assert_nothing_landed(con: duckdb.DuckDBPyConnection) -> None:
    assert read_marks(con, SITE) == {"Patient": MARK}
    assert con.execute("SELECT count(*) FROM raw.fhir_resource_versions").fetchone() == (0,)


def test_retry_after_is_capped_and_progress_logged(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
):
    script_export(
        scripted_server,
        Reply(202, headers={"Retry-After": "3600", "X-Progress": "collecting"}),
        Reply(202, headers={"Retry-After": "3600", "X-Progress": "50% written"}),
        Reply(200, manifest(scripted_server)),
    )
    scripted_server.on("/files/Patient.ndjson", Reply(200, PATIENTS))
    caplog.set_level(logging.INFO, logger="rescue_pipeline.extract.bulk")
    result = run(scripted_server, con, tmp_path, fake_time, max_wait_seconds=30)
    assert fake_time.waits == [30.0, 30.0]
    assert result.counts["Patient"].received == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("X-Progress: 50% written" in m for m in messages)
    assert any("Retry-After 3600 s capped at max_wait_seconds 30" in m for m in messages)
    assert read_marks(con, SITE) == {"Patient": dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)}
    row = job(con)
    assert (row["state"], row["progress"], row["since"]) == ("complete", "50% written", MARK)
    [kickoff] = [s for s in scripted_server.seen if s.path.startswith("/fhir/$export")]
    assert kickoff.headers["Prefer"] == "respond-async"
    assert kickoff.headers["Accept"] == "application/fhir+json"
    assert kickoff.path == "/fhir/$export?_type=Patient&_since=2026-11-19T01%3A00%3A00.000Z"
    ledger = con.execute("SELECT source, file_sha256, lines FROM ops.landed_files").fetchall()
    url = f"{scripted_server.url}/files/Patient.ndjson"
    assert ledger == [(url, hashlib.sha256(PATIENTS).hexdigest(), 3)]  # the bytes landed


def test_without_retry_after_polls_back_off_from_poll_seconds(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    script_export(
        scripted_server,
        Reply(202),
        Reply(202),
        Reply(202),
        Reply(202),
        Reply(200, manifest(scripted_server)),
    )
    scripted_server.on("/files/Patient.ndjson", Reply(200, PATIENTS))
    run(scripted_server, con, tmp_path, fake_time, poll_seconds=2, max_wait_seconds=10)
    assert fake_time.waits == [2.0, 4.0, 8.0, 10.0]


def test_a_manifest_naming_a_missing_file_fails_the_load_and_marks_stay(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    body = manifest(scripted_server)
    body["output"].append({"type": "Patient", "url": f"{scripted_server.url}/files/gone.ndjson"})
    script_export(scripted_server, Reply(200, body))
    scripted_server.on("/files/Patient.ndjson", Reply(200, PATIENTS))
    outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "No such file"}]}
    scripted_server.on("/files/gone.ndjson", Reply(404, outcome))
    with pytest.raises(SourceError) as err:
        run(scripted_server, con, tmp_path, fake_time)
    assert str(err.value) == (
        f"site {SITE}: GET {scripted_server.url}/files/gone.ndjson: HTTP 404 Not Found: "
        "No such file"
    )
    assert_nothing_landed(con)
    row = job(con)
    assert (row["state"], row["message"]) == ("failed", str(err.value))
    assert scripted_server.hits("/files/gone.ndjson") == 1  # a 404 is not retried
    assert [s.method for s in scripted_server.seen if s.path == "/status/1"][-1] == "DELETE"


def test_a_file_cut_short_fails_the_load_after_retrying(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    script_export(scripted_server, Reply(200, manifest(scripted_server)))
    scripted_server.on("/files/Patient.ndjson", Reply(200, PATIENTS, drop_after=100))
    with pytest.raises(SourceError) as err:
        run(scripted_server, con, tmp_path, fake_time)
    text = str(err.value)
    assert text.startswith(f"site {SITE}: GET {scripted_server.url}/files/Patient.ndjson: ")
    assert f"file cut short: 100 of {len(PATIENTS)} bytes received" in text
    assert "gave up after 2 attempts" in text
    assert scripted_server.hits("/files/Patient.ndjson") == 2
    assert_nothing_landed(con)
    assert job(con)["state"] == "failed"


def test_a_file_with_fewer_lines_than_the_manifest_counts_fails(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    """Whole as HTTP goes (Content-Length met), yet short of what the server said it wrote."""
    script_export(scripted_server, Reply(200, manifest(scripted_server)))
    scripted_server.on("/files/Patient.ndjson", Reply(200, ndjson(patient("p1"), patient("p2"))))
    with pytest.raises(BulkError, match="file cut short: 2 lines received, the manifest says 3"):
        run(scripted_server, con, tmp_path, fake_time)
    assert_nothing_landed(con)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"resourceType": "Bundle", "type": "searchset"}, "not a Bulk Data manifest"),
        (b"<html>maintenance</html>", "the body is not JSON"),
        ({"output": [], "error": []}, "no transactionTime instant"),
    ],
)
def test_a_status_answer_that_is_not_a_manifest_fails_the_load(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
    body: Any,
    reason: str,
):
    script_export(scripted_server, Reply(200, body))
    with pytest.raises(BulkError) as err:
        run(scripted_server, con, tmp_path, fake_time)
    assert str(err.value).startswith(
        f"site {SITE}: GET {scripted_server.url}/status/1: status answered 200 but "
    )
    assert reason in str(err.value)
    assert_nothing_landed(con)
    assert job(con)["state"] == "failed"


def test_error_files_are_kept_counted_and_logged_and_bad_lines_quarantined(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
):
    errors_url = f"{scripted_server.url}/files/errors.ndjson"
    body = manifest(scripted_server, error=[{"type": "OperationOutcome", "url": errors_url}])
    body["output"][0]["count"] = 4
    script_export(scripted_server, Reply(200, body))
    scripted_server.on("/files/Patient.ndjson", Reply(200, PATIENTS + b'{"resourceType": "Pat\n'))
    outcomes = ndjson(
        {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "Patient/p9 not exported"}]},
        {"resourceType": "OperationOutcome", "issue": [{"details": {"text": "Consent withheld"}}]},
    )
    scripted_server.on("/files/errors.ndjson", Reply(200, outcomes))
    caplog.set_level(logging.WARNING, logger="rescue_pipeline.extract.bulk")
    result = run(scripted_server, con, tmp_path, fake_time)
    assert (result.counts["Patient"].accepted, result.counts["Patient"].quarantined) == (3, 1)
    [quarantined] = con.execute(
        "SELECT source, line_number, raw_bytes FROM raw.quarantine"
    ).fetchall()
    assert quarantined == (
        f"{scripted_server.url}/files/Patient.ndjson",
        4,
        b'{"resourceType": "Pat',
    )
    row = job(con)
    assert (row["state"], row["error_files"], row["error_lines"]) == ("complete", 1, 2)
    assert Path(row["error_paths"]).read_bytes() == outcomes
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"the export reports 2 issue(s) in {errors_url}" in warning
    assert "Patient/p9 not exported; Consent withheld" in warning
    assert read_marks(con, SITE)["Patient"] > MARK  # error files do not hold the marks back


def test_files_that_need_no_token_get_none(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    """requiresAccessToken false: files may sit on storage that must never see our token."""
    script_export(scripted_server, Reply(200, manifest(scripted_server, requiresAccessToken=False)))
    scripted_server.on("/files/Patient.ndjson", Reply(200, PATIENTS))
    auth = AuthConfig(kind="bearer", token_env="T")
    run(scripted_server, con, tmp_path, fake_time, auth=auth, env={"T": "tok-0123456789"})
    sent = {s.path: s.headers.get("Authorization") for s in scripted_server.seen}
    assert sent["/status/1"] == "Bearer tok-0123456789"
    assert sent["/files/Patient.ndjson"] is None


def test_a_file_on_another_server_does_not_get_our_token(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    body = manifest(scripted_server)
    body["output"][0]["url"] = "http://files.elsewhere.example/Patient.ndjson"
    script_export(scripted_server, Reply(200, body))
    auth = AuthConfig(kind="bearer", token_env="T")
    with pytest.raises(BulkError, match="on another server than base_url; our token is not sent"):
        run(scripted_server, con, tmp_path, fake_time, auth=auth, env={"T": "tok-0123456789"})
    assert_nothing_landed(con)


def test_a_full_load_supersedes_an_incremental_export_in_progress(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    script_export(scripted_server, Reply(202, headers={"Retry-After": "7200"}))
    with pytest.raises(BulkError, match="it stays stored and the next run resumes polling it"):
        run(scripted_server, con, tmp_path, fake_time)
    script_export(scripted_server, Reply(200, manifest(scripted_server)))
    scripted_server.on("/files/Patient.ndjson", Reply(200, PATIENTS))
    config = site(scripted_server)
    with FhirHttpClient(SITE, make_auth(SITE, AuthConfig())) as client:
        fetch_and_land(con, config, "L2", work_dir=tmp_path, full=True, client=client)
    states = con.execute(
        "SELECT state, since, message FROM ops.bulk_jobs ORDER BY kicked_off_at"
    ).fetchall()
    assert states == [
        ("abandoned", MARK, "superseded by a full load (--full)"),
        ("complete", None, None),
    ]
    kickoffs = [s.path for s in scripted_server.seen if s.path.startswith("/fhir/$export")]
    assert kickoffs == [
        "/fhir/$export?_type=Patient&_since=2026-11-19T01%3A00%3A00.000Z",
        "/fhir/$export?_type=Patient",
    ]


def test_two_sites_one_fails_the_other_lands(
    scripted_server: ScriptedServer, sekmet: Sekmet, tmp_path: Path
):
    """Through `load_site`, as `rescue run` and the Dagster assets call it."""
    body = manifest(scripted_server)
    body["output"][0]["url"] = f"{scripted_server.url}/files/missing.ndjson"
    script_export(scripted_server, Reply(200, body))
    config_file = tmp_path / "sites.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "study_id": "RESCUE",
                "warehouse": "warehouse/rescue.duckdb",
                "sites": [
                    {
                        "id": "site-x",
                        "source": {"kind": "bulk", "base_url": f"{scripted_server.url}/fhir"},
                    },
                    {
                        "id": "site-b",
                        "source": {
                            "kind": "bulk",
                            "base_url": sekmet.base_url,
                            "types": ["Patient"],
                        },
                    },
                ],
            }
        )
    )
    config = load_config(config_file)
    failures: dict[str, str] = {}
    for s in config.sites:
        try:
            load_site(config, s)
        except SiteLoadError as exc:
            failures[s.id] = str(exc)
    assert list(failures) == ["site-x"]
    assert failures["site-x"].startswith(
        f"site site-x: GET {scripted_server.url}/files/missing.ndjson: HTTP 404"
    )
    with work_db(config) as con:
        landed = con.execute(
            "SELECT site_id, count(*) FROM raw.fhir_resource_versions GROUP BY ALL"
        ).fetchall()
        assert landed == [("site-b", (sekmet.cohort / "Patient.ndjson").read_bytes().count(b"\n"))]
        assert set(read_marks(con, "site-b")) == {"Patient"} and read_marks(con, "site-x") == {}
        runs = dict(con.execute("SELECT site_id, status FROM ops.runs").fetchall())
        assert runs == {"site-x": "failed", "site-b": "succeeded"}
        states = dict(con.execute("SELECT site_id, state FROM ops.bulk_jobs").fetchall())
        assert states == {"site-x": "failed", "site-b": "complete"}
    assert (tmp_path / "warehouse" / "extract" / "site-b").is_dir()  # beside the work database


def test_a_manifest_type_that_is_a_path_names_no_file_and_its_lines_still_land(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    url = scripted_server.url
    hostile = manifest(scripted_server)
    hostile["output"] = [
        {"type": "../../../escaped", "url": f"{url}/files/a.ndjson", "count": 3},
        {"type": "/tmp/escaped-abs", "url": f"{url}/files/b.ndjson", "count": 1},
    ]
    hostile["error"] = [{"type": "../../escaped-error", "url": f"{url}/files/e.ndjson"}]
    script_export(scripted_server, Reply(200, hostile))
    scripted_server.on("/files/a.ndjson", Reply(200, PATIENTS))
    scripted_server.on("/files/b.ndjson", Reply(200, ndjson(patient("p4"))))
    scripted_server.on("/files/e.ndjson", Reply(200, b""))
    result = run(scripted_server, con, tmp_path, fake_time)
    assert result.counts["Patient"].accepted == 4  # each line's own resourceType decides
    assert not [p for p in tmp_path.parent.rglob("*escaped*")]
    assert not Path("/tmp/escaped-abs.ndjson").exists()
    names = sorted(p.name for p in (tmp_path / "extract").rglob("*.ndjson"))
    assert names == ["0001-OperationOutcome.ndjson", "0001-Unknown.ndjson", "0002-Unknown.ndjson"]


def test_a_file_larger_than_max_file_bytes_fails_the_load_without_filling_the_disk(
    scripted_server: ScriptedServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    fake_time: FakeTime,
):
    script_export(scripted_server, Reply(200, manifest(scripted_server)))
    big = ndjson(*(patient(f"p{i}") for i in range(400)))  # ~40 KB, no Content-Length needed
    scripted_server.on("/files/Patient.ndjson", Reply(200, big))
    with pytest.raises(SourceError, match=r"the file is larger than max_file_bytes 4096$"):
        run(scripted_server, con, tmp_path, fake_time, max_file_bytes=4096)
    downloads = [s for s in scripted_server.seen if s.path == "/files/Patient.ndjson"]
    assert len(downloads) == 1  # deterministic: not retried
    assert con.execute("SELECT count(*) FROM raw.fhir_resource_versions").fetchall() == [(0,)]
    assert read_marks(con, SITE)["Patient"] == MARK
