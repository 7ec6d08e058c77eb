"""Deletions from type-level history against a real FHIR server (sekmet-fhir 0.1.1, which has
DELETE and `[Type]/_history?_since=`, lists history-type in its CapabilityStatement, and pages
history by offset with next links that drop `_since`). Its own server: this test deletes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest

from rescue_pipeline.config import FhirSource, SiteConfig
from rescue_pipeline.extract.watermarks import read_marks
from rescue_pipeline.raw.landing import LoadResult
from rescue_pipeline.site_load import fetch_and_land
from rescue_pipeline.warehouse.database import open_work_db
from tests.extract.conftest import Sekmet, cohort_folder, start_sekmet

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sekmet]:
    tmp = tmp_path_factory.mktemp("sekmet-deletions")
    started = start_sekmet(tmp)
    try:
        yield Sekmet(started.base_url, cohort_folder(tmp))
    finally:
        started.stop()


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_work_db(tmp_path / "rescue.work.duckdb")
    yield connection
    connection.close()


def first_ids(folder: Path, rtype: str, n: int) -> list[str]:
    lines = (folder / f"{rtype}.ndjson").read_bytes().splitlines()[:n]
    return [orjson.loads(x)["id"] for x in lines]


def load(server: Sekmet, con: duckdb.DuckDBPyConnection, tmp: Path, load_id: str) -> LoadResult:
    source = FhirSource(  # the files are read afterwards
        base_url=server.base_url, page_size=2, overlap_seconds=0, keep_extract_days=1
    )
    site = SiteConfig(id="site-a", source=source)
    return fetch_and_land(con, site, load_id, work_dir=tmp)


def current(con: duckdb.DuckDBPyConnection, rtype: str, rid: str) -> int:
    return int(
        con.execute(
            "SELECT count(*) FROM raw.fhir_resources WHERE resource_type = ? AND resource_id = ?",
            [rtype, rid],
        ).fetchall()[0][0]
    )


def test_deleted_on_the_server_leaves_the_view_and_a_recreated_one_comes_back(
    server: Sekmet, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    [pid] = first_ids(server.cohort, "Patient", 1)
    oids = first_ids(server.cohort, "Observation", 3)
    source = FhirSource(base_url=server.base_url, page_size=500, overlap_seconds=0)
    first = fetch_and_land(con, SiteConfig(id="site-a", source=source), "L1", work_dir=tmp_path)
    assert first.deletions is not None and first.deletions.total().received == 0
    assert set(read_marks(con, "site-a", of="deletions")) == set(read_marks(con, "site-a"))

    for rtype, rid in [("Patient", pid), *(("Observation", o) for o in oids)]:
        response = httpx.delete(f"{server.base_url}/{rtype}/{rid}")
        assert response.status_code in (200, 204), response.text
        assert httpx.get(f"{server.base_url}/{rtype}/{rid}").status_code == 410

    second = load(server, con, tmp_path, "L2")
    assert second.deletions is not None
    assert {t: c.recorded for t, c in second.deletions.counts.items()} == {
        "Patient": 1,
        "Observation": 3,
    }
    rows = con.execute(
        "SELECT resource_type, resource_id, deleted_at_basis, version_id FROM raw.deletions "
        "ORDER BY 1, 2"
    ).fetchall()
    assert rows == sorted(
        [("Observation", o, "entry", "2") for o in oids] + [("Patient", pid, "entry", "2")]
    )
    assert current(con, "Patient", pid) == 0
    assert all(current(con, "Observation", o) == 0 for o in oids)
    versions = con.execute("SELECT count(*) FROM raw.fhir_resource_versions").fetchall()[0][0]
    assert versions == first.total().new_versions  # the versions stay
    # three deletions at two a page: two pages, each still asking _since (sekmet drops it
    # from its next links; we put it back)
    written = tmp_path / "extract" / "site-a" / "L2" / "deleted" / "Observation.ndjson"
    pages = [orjson.loads(x) for x in written.read_bytes().splitlines()]
    assert len(pages) == 2
    assert all("_since=" in p["link"][0]["url"] for p in pages)
    marks = read_marks(con, "site-a", of="deletions")
    deleted_at = con.execute(
        "SELECT max(deleted_at) FROM raw.deletions WHERE resource_type = 'Observation'"
    ).fetchall()[0][0]
    assert marks["Observation"] == deleted_at.astimezone(dt.UTC)

    third = load(server, con, tmp_path, "L3")  # the same deletions again: nothing new
    assert third.deletions is not None and third.deletions.total().recorded == 0
    assert con.execute("SELECT count(*) FROM raw.deletions").fetchall() == [(4,)]

    resource = orjson.loads((server.cohort / "Patient.ndjson").read_bytes().splitlines()[0])
    response = httpx.put(
        f"{server.base_url}/Patient/{pid}",
        content=orjson.dumps(resource),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code in (200, 201), response.text
    load(server, con, tmp_path, "L4")
    assert current(con, "Patient", pid) == 1
    [(version,)] = con.execute(
        "SELECT version_id FROM raw.fhir_resources WHERE resource_type = 'Patient' AND "
        "resource_id = ?",
        [pid],
    ).fetchall()
    assert version == "3"
    assert all(current(con, "Observation", o) == 0 for o in oids)
