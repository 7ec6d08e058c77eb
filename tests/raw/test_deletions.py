"""Deletions in the raw layer: every deletion kept once, bad ones quarantined, and the current
view leaving a deleted resource out until a newer version comes back."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from rescue_pipeline.extract.ndjson import DeletionFile, discover, discover_deletions
from rescue_pipeline.raw.deletions import land_deletions
from rescue_pipeline.raw.landing import land_files
from rescue_pipeline.warehouse.database import open_work_db

SITE = "site-d"


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_work_db(tmp_path / "rescue.work.duckdb")
    yield connection
    connection.close()


def patient(pid: str, updated: str, version: str = "1") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": version, "lastUpdated": updated},
        "gender": "female",
    }


def deletion(url: str, modified: str | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"request": {"method": "DELETE", "url": url}, **extra}
    if modified:
        entry["response"] = {"status": "204", "lastModified": modified, "etag": 'W/"2"'}
    return entry


def bundle(*entries: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries), **extra}


def write(path: Path, *lines: dict[str, Any] | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)
    path.write_bytes(raw)
    return path


def load(con: duckdb.DuckDBPyConnection, folder: Path, load_id: str, reread: bool = False) -> None:
    land_files(con, SITE, discover(folder, SITE), load_id=load_id, reread=reread)
    land_deletions(con, SITE, discover_deletions(folder, SITE), load_id=load_id, reread=reread)


def current(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str | None]]:
    return con.execute(
        "SELECT resource_id, version_id FROM raw.fhir_resources ORDER BY resource_id"
    ).fetchall()


def test_a_deleted_resource_leaves_the_view_and_its_versions_stay(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    folder = tmp_path / SITE
    write(
        folder / "Patient.ndjson",
        patient("p1", "2026-11-01T10:00:00Z"),
        patient("p2", "2026-11-01T10:00:00Z"),
    )
    load(con, folder, "L1")
    write(
        folder / "deleted" / "del-1.ndjson",
        bundle(deletion("Patient/p1", "2026-11-02T08:00:00.000Z")),
    )
    load(con, folder, "L2")
    assert current(con) == [("p2", "1")]
    assert con.execute("SELECT count(*) FROM raw.fhir_resource_versions").fetchall() == [(2,)]
    row = con.execute(
        "SELECT resource_type, resource_id, deleted_at, deleted_at_basis, version_id, source, "
        "line_number, entry_index, load_id FROM raw.deletions"
    ).fetchall()
    assert row == [
        (
            "Patient", "p1", dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC), "entry", "2",
            "deleted/del-1.ndjson", 1, 0, "L2",
        )
    ]  # fmt: skip
    counts = con.execute(
        "SELECT load_id, resource_type, received, recorded, quarantined FROM raw.deletion_loads"
    ).fetchall()
    assert counts == [("L2", "Patient", 1, 1, 0)]


def test_the_same_deletion_twice_is_kept_once(con: duckdb.DuckDBPyConnection, tmp_path: Path):
    folder = tmp_path / SITE
    write(folder / "Patient.ndjson", patient("p1", "2026-11-01T10:00:00Z"))
    same = bundle(deletion("Patient/p1", "2026-11-02T08:00:00Z"))
    write(folder / "deleted" / "a.ndjson", same, same)
    write(folder / "deleted" / "b.ndjson", same)
    load(con, folder, "L1")
    load(con, folder, "L2", reread=True)  # a full reload reads every file again
    assert con.execute("SELECT count(*) FROM raw.deletions").fetchall() == [(1,)]
    counts = con.execute(
        "SELECT load_id, received, recorded FROM raw.deletion_loads ORDER BY load_id"
    ).fetchall()
    assert counts == [("L1", 3, 1), ("L2", 3, 0)]


def test_a_version_newer_than_the_deletion_brings_the_resource_back(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    folder = tmp_path / SITE
    write(folder / "Patient.ndjson", patient("p1", "2026-11-01T10:00:00Z"))
    write(folder / "deleted" / "d.ndjson", bundle(deletion("Patient/p1", "2026-11-02T08:00:00Z")))
    load(con, folder, "L1")
    assert current(con) == []
    # an older version arriving after the deletion does not bring it back
    write(folder / "Patient-old.ndjson", patient("p1", "2026-10-01T10:00:00Z", "0"))
    load(con, folder, "L2")
    assert current(con) == []
    write(folder / "Patient-new.ndjson", patient("p1", "2026-11-03T10:00:00Z", "3"))
    load(con, folder, "L3")
    assert current(con) == [("p1", "3")]
    # a second deletion, after the re-creation, removes it again
    write(folder / "deleted" / "d2.ndjson", bundle(deletion("Patient/p1", "2026-11-04T08:00:00Z")))
    load(con, folder, "L4")
    assert current(con) == []
    assert con.execute("SELECT count(*) FROM raw.fhir_resource_versions").fetchall() == [(3,)]


def test_a_deletion_without_its_own_time_takes_the_bundle_then_the_manifest_then_the_file(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    folder = tmp_path / SITE
    write(folder / "Patient.ndjson", *(patient(p, "2026-11-01T10:00:00Z") for p in "abc"))
    write(
        folder / "deleted" / "d.ndjson",
        bundle(deletion("Patient/a"), timestamp="2026-11-05T00:00:00+01:00"),
        bundle(deletion("http://fhir.example/R4/Patient/b")),
    )
    load(con, folder, "L1")
    rows = con.execute(
        "SELECT resource_id, deleted_at, deleted_at_basis FROM raw.deletions ORDER BY 1"
    ).fetchall()
    mtime = dt.datetime.fromtimestamp(os.stat(folder / "deleted" / "d.ndjson").st_mtime, dt.UTC)
    assert rows == [
        ("a", dt.datetime(2026, 11, 4, 23, tzinfo=dt.UTC), "bundle"),
        ("b", mtime, "file"),
    ]
    (folder / "manifest.json").write_bytes(
        orjson.dumps(
            {
                "transactionTime": "2026-11-06T00:00:00Z",
                "output": [{"type": "Patient", "url": "Patient.ndjson"}],
                "deleted": [{"type": "Bundle", "url": "https://x.example/files/more.ndjson"}],
            }
        )
    )
    write(folder / "deleted" / "more.ndjson", bundle(deletion("Patient/c")))
    load(con, folder, "L2")
    assert con.execute(
        "SELECT deleted_at, deleted_at_basis FROM raw.deletions WHERE resource_id = 'c'"
    ).fetchall() == [(dt.datetime(2026, 11, 6, tzinfo=dt.UTC), "export")]
    assert current(con) == []


def test_malformed_deletions_are_quarantined_with_bytes_reason_and_element(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    folder = tmp_path / SITE
    write(folder / "Patient.ndjson", patient("p1", "2026-11-01T10:00:00Z"))
    lines: list[dict[str, Any] | bytes] = [
        b'{"resourceType": "Bund',
        {"resourceType": "Patient", "id": "p1"},
        bundle(),
        bundle(
            deletion("Patient/p1", "2026-11-02T08:00:00Z"),
            {"request": {"method": "PUT", "url": "Patient/p1"}},
            deletion("Patient"),
            deletion("Nonsense/x1"),
            {"fullUrl": "Patient/p1"},
            {
                "request": {"method": "DELETE", "url": "Patient/p1"},
                "response": {"lastModified": "yesterday"},
            },
        ),
    ]
    write(folder / "deleted" / "bad.ndjson", *lines)
    caplog.set_level(logging.WARNING, logger="rescue_pipeline.raw.deletions")
    load(con, folder, "L1")
    assert current(con) == []  # the good entry still counts
    rows = con.execute(
        "SELECT line_number, resource_type, reason, element, detail FROM raw.quarantine "
        "ORDER BY line_number, element"
    ).fetchall()
    assert rows == [
        (1, "Bundle", "not_json", None, "the line is not valid JSON"),
        (2, "Bundle", "not_a_bundle", "resourceType", "resourceType: is not Bundle"),
        (3, "Bundle", "not_a_bundle", "entry", "entry: no entries"),
        (4, "Patient", "invalid_deletion", "entry[1].request.method",
         "Patient: entry[1].request.method: is not DELETE"),
        (4, "Bundle", "invalid_deletion", "entry[2].request.url",
         "entry[2].request.url: is missing or not Type/id of a FHIR R4 resource type"),
        (4, "Bundle", "invalid_deletion", "entry[3].request.url",
         "entry[3].request.url: is missing or not Type/id of a FHIR R4 resource type"),
        (4, "Bundle", "invalid_deletion", "entry[4].request", "entry[4].request: is missing"),
        (4, "Patient", "invalid_date", "entry[5].response.lastModified",
         "Patient: entry[5].response.lastModified: is not a FHIR instant"),
    ]  # fmt: skip
    [raw] = con.execute("SELECT raw_bytes FROM raw.quarantine WHERE line_number = 1").fetchall()
    assert raw == (b'{"resourceType": "Bund',)
    counts = con.execute(
        "SELECT resource_type, received, recorded, quarantined FROM raw.deletion_loads ORDER BY 1"
    ).fetchall()
    assert counts == [("Bundle", 6, 0, 6), ("Patient", 3, 1, 2)]
    warnings = [r.getMessage() for r in caplog.records]
    assert (
        f"site {SITE}: deleted/bad.ndjson line 4: deletion quarantined: Patient: " in (warnings[3])
    )
    assert all("yesterday" not in w and "p1" not in w for w in warnings)  # never a value
    load(con, folder, "L2", reread=True)
    assert con.execute("SELECT count(*) FROM raw.quarantine").fetchall() == [(8,)]


def test_an_unchanged_deletion_file_is_not_read_again(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    path = write(tmp_path / "d.ndjson", bundle(deletion("Patient/p1", "2026-11-02T08:00:00Z")))
    file = DeletionFile(path, "d.ndjson")
    first = land_deletions(con, SITE, [file], load_id="L1")
    second = land_deletions(con, SITE, [file], load_id="L2")
    assert (first.files_read, second.files_read, second.files_unchanged) == (1, 0, 1)
