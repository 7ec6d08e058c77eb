"""Bulk Data $export against a real FHIR server (sekmet-fhir on 127.0.0.1): full then incremental,
an export that outlives our process, a server that loses its jobs on restart, the deadline,
group level, and each kind of auth. Every test says what raw, ops.watermarks and ops.bulk_jobs
hold afterwards; the server's own traffic log shows what it was asked."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import httpx
import orjson
import pytest

from rescue_pipeline.config import AuthConfig, BulkSource, SiteConfig
from rescue_pipeline.extract.bulk import BulkError
from rescue_pipeline.extract.bulk_jobs import polling_job
from rescue_pipeline.extract.rest import DEFAULT_TYPES
from rescue_pipeline.extract.watermarks import read_marks
from rescue_pipeline.raw.landing import LoadResult
from rescue_pipeline.site_load import fetch_and_land
from rescue_pipeline.warehouse.database import open_work_db
from tests.extract.conftest import SekmetSmart, cohort_folder, start_sekmet
from tests.extract.sekmet_server import SekmetServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "site-b"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SekmetServer]:
    """This module's own server, logging the requests it receives (to count kick-offs)."""
    started = start_sekmet(tmp_path_factory.mktemp("sekmet-bulk"), log_inbound=True)
    yield started
    started.stop()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "rescue.work.duckdb"


@pytest.fixture
def con(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_work_db(db)
    yield connection
    connection.close()


def bulk_site(base_url: str, **options: Any) -> SiteConfig:
    return SiteConfig(id=SITE, source=BulkSource(base_url=base_url, **options))


def cohort_counts(folder: Path) -> dict[str, int]:
    return {p.stem: p.read_bytes().count(b"\n") for p in folder.glob("*.ndjson")}


def received(result: LoadResult) -> dict[str, int]:
    return {t: c.received for t, c in result.counts.items() if c.received}


def jobs(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cursor = con.execute("SELECT * FROM ops.bulk_jobs ORDER BY kicked_off_at")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def put(base_url: str, resource: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    url = f"{base_url}/{resource['resourceType']}/{resource['id']}"
    response = httpx.put(
        url,
        content=orjson.dumps(resource),
        headers={"Content-Type": "application/fhir+json", **(headers or {})},
    )
    assert response.status_code < 300, response.text


def first_lines(folder: Path, rtype: str, n: int) -> list[dict[str, Any]]:
    lines = (folder / f"{rtype}.ndjson").read_bytes().splitlines()[:n]
    return [orjson.loads(x) for x in lines]


def test_full_then_incremental_export_fetches_only_what_changed(
    server: SekmetServer, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    cohort = cohort_folder(server.folder.parent)
    site = bulk_site(server.base_url, keep_extract_days=1)  # the files are read below
    kickoffs = server.received("GET", "/$export")

    first = fetch_and_land(con, site, "L1", work_dir=tmp_path)
    assert received(first) == cohort_counts(cohort)
    assert first.total().quarantined == 0
    stored = con.execute("SELECT resource_type, count(*) FROM raw.fhir_resources GROUP BY ALL")
    assert dict(stored.fetchall()) == cohort_counts(cohort)
    [job] = jobs(con)
    assert job["state"] == "complete" and job["since"] is None
    assert job["output_files"] == len(cohort_counts(cohort)) and job["error_files"] == 0
    marks = read_marks(con, SITE)
    assert set(marks) == set(DEFAULT_TYPES)
    assert set(marks.values()) == {job["transaction_time"]}  # every type: transactionTime
    assert con.execute("SELECT count(*) FROM raw.quarantine").fetchone() == (0,)
    files = sorted(p.name for p in (tmp_path / "extract" / SITE / "L1").glob("*.ndjson"))
    assert files[0] == "0001-Condition.ndjson" and len(files) == job["output_files"]

    changed = first_lines(cohort, "Observation", 2) + first_lines(cohort, "Patient", 1)
    for resource in changed:  # every PUT is a new version on this server
        put(server.base_url, resource)
    second = fetch_and_land(con, site, "L2", work_dir=tmp_path)
    assert received(second) == {"Observation": 2, "Patient": 1}
    assert second.total().new_versions == 3
    new = con.execute(
        "SELECT resource_type, resource_id FROM raw.fhir_resource_versions WHERE load_id = 'L2'"
    ).fetchall()
    assert sorted(new) == sorted((r["resourceType"], r["id"]) for r in changed)
    first_job, second_job = jobs(con)
    assert second_job["since"] == first_job["transaction_time"]  # _since = the watermark
    assert "_since=" in second_job["kickoff_url"] and second_job["kickoff_url"].endswith("Z")
    assert set(read_marks(con, SITE).values()) == {second_job["transaction_time"]}
    assert server.received("GET", "/$export", expect=kickoffs + 2) == kickoffs + 2
    for done in (first_job, second_job):  # landed: the server may free the files
        path = urlsplit(done["status_url"]).path
        assert server.received("DELETE", path, expect=1) == 1


CHILD = """
import logging, sys
from pathlib import Path
from rescue_pipeline.config import BulkSource, SiteConfig
from rescue_pipeline.site_load import fetch_and_land
from rescue_pipeline.warehouse.database import open_work_db

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
db, base_url = Path(sys.argv[1]), sys.argv[2]
site = SiteConfig(id="site-b", source=BulkSource(base_url=base_url))
fetch_and_land(open_work_db(db), site, "L1", work_dir=db.parent)
"""


def test_an_export_in_progress_survives_a_restart_of_our_process(
    server: SekmetServer, db: Path, tmp_path: Path
):
    """Our process is killed mid-poll; a new one resumes the stored status URL, no new kick-off."""
    kickoffs = server.received("GET", "/$export")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), server.base_url],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    seen: list[str] = []
    for line in child.stderr:
        seen.append(line)
        if "export in progress" in line:
            child.kill()  # no cleanup of any kind: as if the machine went down
            break
    child.wait(30)
    assert any("export in progress" in line for line in seen), "".join(seen)

    con = open_work_db(db)
    try:
        stored = polling_job(con, SITE)
        assert stored is not None and stored.load_id == "L1"
        assert server.received("GET", "/$export") - kickoffs == 1
        result = fetch_and_land(con, bulk_site(server.base_url), "L2", work_dir=tmp_path)
        assert received(result) == cohort_counts(cohort_folder(server.folder.parent))
        [job] = jobs(con)
        assert job["status_url"] == stored.status_url
        assert (job["state"], job["load_id"], job["finished_load_id"]) == ("complete", "L1", "L2")
        assert server.received("GET", "/$export") - kickoffs == 1  # resumed, not asked again
        assert set(read_marks(con, SITE).values()) == {job["transaction_time"]}
    finally:
        con.close()


def test_a_server_that_lost_the_job_gets_a_new_export_and_the_log_says_so(
    server: SekmetServer,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    kickoffs = server.received("GET", "/$export")
    impatient = bulk_site(server.base_url, run_wait_minutes=0.001)  # stops after one poll
    with pytest.raises(BulkError) as err:
        fetch_and_land(con, impatient, "L1", work_dir=tmp_path)
    assert "still in progress" in str(err.value)
    assert "it stays stored and the next run resumes polling it" in str(err.value)
    lost = polling_job(con, SITE)
    assert lost is not None
    assert read_marks(con, SITE) == {}

    server.restart()  # sekmet keeps export jobs in memory only
    caplog.set_level(logging.WARNING, logger="rescue_pipeline.extract.bulk")
    result = fetch_and_land(con, bulk_site(server.base_url), "L2", work_dir=tmp_path)
    assert received(result) == cohort_counts(cohort_folder(server.folder.parent))
    warning = [r.getMessage() for r in caplog.records if "no longer knows" in r.getMessage()]
    assert warning == [
        f"site {SITE}: the server no longer knows this export (HTTP 404 at {lost.status_url}); "
        "a new export was started"
    ]
    old, new = jobs(con)
    assert (old["state"], old["finished_load_id"]) == ("abandoned", "L2")
    assert "HTTP 404" in old["message"]
    assert new["state"] == "complete" and new["status_url"] != old["status_url"]
    assert server.received("GET", "/$export", expect=kickoffs + 2) == kickoffs + 2


def test_an_export_past_its_deadline_fails_with_the_reason_and_marks_stay(
    server: SekmetServer, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    site = bulk_site(server.base_url, types=("Patient",))
    fetch_and_land(con, site, "L1", work_dir=tmp_path)
    marks = read_marks(con, SITE)
    versions = con.execute("SELECT count(*) FROM raw.fhir_resource_versions").fetchone()

    hasty = replace(site, source=replace(site.source, deadline_hours=0.5 / 3600))  # 0.5 s
    with pytest.raises(BulkError) as err:
        fetch_and_land(con, hasty, "L2", work_dir=tmp_path)
    text = str(err.value)
    assert text.startswith(f"site {SITE}: export kicked off at ")
    assert "is still in progress" in text and "past its deadline of 0.5 s" in text
    assert f"({server.base_url}/bulk-status/" in text
    assert "abandoned, the next run starts a new export" in text
    assert read_marks(con, SITE) == marks
    assert con.execute("SELECT count(*) FROM raw.fhir_resource_versions").fetchone() == versions
    _, late = jobs(con)
    assert (late["state"], late["message"]) == ("abandoned", text)
    assert polling_job(con, SITE) is None  # the next run starts afresh
    cancelled = urlsplit(late["status_url"]).path
    assert server.received("DELETE", cancelled, expect=1) == 1  # cancelled on the server


def test_group_level_exports_only_the_group_members(
    server: SekmetServer, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    cohort = cohort_folder(server.folder.parent)
    members = [p["id"] for p in first_lines(cohort, "Patient", 3)]
    group = {
        "resourceType": "Group",
        "id": "rescue-site-b",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in members],
    }
    put(server.base_url, group)
    site = bulk_site(
        server.base_url, level="group", group_id="rescue-site-b", types=("Patient", "Observation")
    )
    result = fetch_and_land(con, site, "L1", work_dir=tmp_path)
    patients = con.execute(
        "SELECT resource_id FROM raw.fhir_resources WHERE resource_type = 'Patient'"
    ).fetchall()
    assert sorted(p for (p,) in patients) == sorted(members)
    subjects = con.execute(
        "SELECT DISTINCT payload->>'$.subject.reference' FROM raw.fhir_resources "
        "WHERE resource_type = 'Observation'"
    ).fetchall()
    assert {s for (s,) in subjects} <= {f"Patient/{m}" for m in members}
    assert received(result)["Observation"] > 0
    [job] = jobs(con)
    assert job["level"] == "group"
    assert "/Group/rescue-site-b/$export?_type=Patient,Observation" in job["kickoff_url"]


def test_bearer_token_site_exports_and_the_token_stays_out_of_logs_and_rows(
    sekmet_smart: SekmetSmart,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("SITE_B_TOKEN", sekmet_smart.bearer_token)
    site = bulk_site(
        sekmet_smart.base_url,
        auth=AuthConfig(kind="bearer", token_env="SITE_B_TOKEN"),
        types=("Patient", "Observation"),
    )
    caplog.set_level(logging.DEBUG)
    result = fetch_and_land(con, site, "L1", work_dir=tmp_path)
    counts = cohort_counts(sekmet_smart.cohort)
    assert received(result) == {"Patient": counts["Patient"], "Observation": counts["Observation"]}
    [job] = jobs(con)
    assert job["state"] == "complete"
    rows = str(con.execute("SELECT * FROM ops.bulk_jobs").fetchall())
    rows += str(con.execute("SELECT * FROM ops.runs").fetchall())
    for text in [rows, *(r.getMessage() for r in caplog.records)]:
        assert sekmet_smart.bearer_token not in text


def test_smart_backend_site_exports_with_one_token(
    sekmet_smart: SekmetSmart,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    """Files need the token too (requiresAccessToken); read-only scopes may not DELETE the job,
    which is a warning, not a failure."""
    monkeypatch.setenv("SITE_B_KEY", str(sekmet_smart.key_file))
    auth = AuthConfig(
        kind="smart-backend",
        client_id=sekmet_smart.client_id,
        key_file_env="SITE_B_KEY",
        key_id=sekmet_smart.key_id,
        scope="system/*.read",
    )
    site = bulk_site(
        sekmet_smart.base_url, auth=auth, types=("Patient", "Condition"), allow_insecure_http=True
    )
    caplog.set_level(logging.WARNING)
    result = fetch_and_land(con, site, "L1", work_dir=tmp_path)
    counts = cohort_counts(sekmet_smart.cohort)
    assert received(result) == {"Patient": counts["Patient"], "Condition": counts["Condition"]}
    assert jobs(con)[0]["state"] == "complete"
    refused = [r.getMessage() for r in caplog.records if "DELETE" in r.getMessage()]
    assert len(refused) == 1 and "HTTP 403" in refused[0]
    assert "the server keeps the export until it expires" in refused[0]


def test_since_is_sent_in_utc_z_whatever_the_mark_zone(
    server: SekmetServer, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    """sekmet compares _since as a string: an offset form would select the wrong resources."""
    paris = dt.timezone(dt.timedelta(hours=2))
    future = dt.datetime.now(paris) + dt.timedelta(hours=1)
    con.execute(
        "INSERT INTO ops.watermarks VALUES (?, 'Patient', ?, ?, 'L0')",
        [SITE, future, future],
    )
    result = fetch_and_land(
        con, bulk_site(server.base_url, types=("Patient",)), "L1", work_dir=tmp_path
    )
    assert received(result) == {}
    [job] = jobs(con)
    sent = future.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert f"_since={sent}." in job["kickoff_url"] and job["kickoff_url"].endswith("Z")
