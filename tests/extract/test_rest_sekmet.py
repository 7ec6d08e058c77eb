"""REST search extract against a real FHIR server (sekmet-fhir on 127.0.0.1): full load, then
incremental, then two sites of which one is down."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest

from rescue_pipeline.config import FhirSource, SiteConfig
from rescue_pipeline.extract.auth import NoAuth
from rescue_pipeline.extract.http import FhirHttpClient, HttpError, RetryPolicy
from rescue_pipeline.extract.ndjson import SourceError
from rescue_pipeline.extract.watermarks import read_marks
from rescue_pipeline.raw.landing import LoadResult
from rescue_pipeline.site_load import fetch_and_land
from rescue_pipeline.warehouse.database import open_work_db
from tests.extract.conftest import FakeTime, Sekmet

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_work_db(tmp_path / "rescue.work.duckdb")
    yield connection
    connection.close()


def cohort_counts(folder: Path) -> dict[str, int]:
    return {p.stem: p.read_bytes().count(b"\n") for p in folder.glob("*.ndjson")}


def site(base_url: str, site_id: str = "site-a", overlap: int = 0) -> SiteConfig:
    return SiteConfig(
        id=site_id, source=FhirSource(base_url=base_url, page_size=500, overlap_seconds=overlap)
    )


def received(result: LoadResult) -> dict[str, int]:
    return {t: c.received for t, c in result.counts.items() if c.received}


def test_full_load_lands_every_resource_of_the_cohort(
    sekmet: Sekmet, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    result = fetch_and_land(con, site(sekmet.base_url), "L1", work_dir=tmp_path)
    expected = cohort_counts(sekmet.cohort)
    assert received(result) == expected
    assert result.total().quarantined == 0
    stored = dict(
        con.execute(
            "SELECT resource_type, count(*) FROM raw.fhir_resources GROUP BY ALL"
        ).fetchall()
    )
    assert stored == expected
    assert set(read_marks(con, "site-a")) == set(expected)


def test_incremental_fetches_only_what_changed(
    sekmet: Sekmet, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    fetch_and_land(con, site(sekmet.base_url), "L1", work_dir=tmp_path)
    lines = (sekmet.cohort / "Observation.ndjson").read_bytes().splitlines()
    changed = [orjson.loads(x) for x in lines[:2]]
    changed.append(orjson.loads((sekmet.cohort / "Patient.ndjson").read_bytes().splitlines()[0]))
    for resource in changed:  # every PUT is a new version on this server, even unchanged
        url = f"{sekmet.base_url}/{resource['resourceType']}/{resource['id']}"
        response = httpx.put(
            url, content=orjson.dumps(resource), headers={"Content-Type": "application/fhir+json"}
        )
        assert response.status_code < 300, response.text

    second = fetch_and_land(con, site(sekmet.base_url), "L2", work_dir=tmp_path)
    assert received(second) == {"Observation": 2, "Patient": 1}
    assert second.total().new_versions == 3
    new = con.execute(
        "SELECT resource_type, resource_id FROM raw.fhir_resource_versions WHERE load_id = 'L2'"
    ).fetchall()
    assert sorted(new) == sorted((r["resourceType"], r["id"]) for r in changed)


def test_overlap_window_refetches_and_the_repeats_add_nothing(
    sekmet: Sekmet, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    """The cohort was written minutes ago: an hour's overlap fetches all of it again."""
    wide = site(sekmet.base_url, overlap=3600)
    fetch_and_land(con, wide, "L1", work_dir=tmp_path)
    second = fetch_and_land(con, wide, "L2", work_dir=tmp_path)
    assert received(second) == cohort_counts(sekmet.cohort)
    assert second.total().new_versions == 0


def test_one_site_down_fails_clearly_the_other_lands(
    sekmet: Sekmet, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    sites = [site(f"http://127.0.0.1:{dead_port}/fhir", "site-down"), site(sekmet.base_url)]
    fake = FakeTime()
    errors: dict[str, str] = {}
    results: dict[str, LoadResult] = {}
    for s_ in sites:
        client = FhirHttpClient(
            s_.id,
            NoAuth(),
            policy=RetryPolicy(max_attempts=3),
            sleep=fake.sleep,
            clock=fake.clock,
            rng=random.Random(3),
        )
        try:
            with client:
                results[s_.id] = fetch_and_land(
                    con, s_, f"L-{s_.id}", work_dir=tmp_path, client=client
                )
        except SourceError as exc:
            errors[s_.id] = str(exc)
    assert set(errors) == {"site-down"} and set(results) == {"site-a"}
    assert isinstance(HttpError(errors["site-down"]), SourceError)
    assert errors["site-down"].startswith(
        f"site site-down: GET http://127.0.0.1:{dead_port}/fhir/Patient?_count=500: cannot connect"
    )
    assert "3 attempts" in errors["site-down"]
    assert received(results["site-a"]) == cohort_counts(sekmet.cohort)
    assert read_marks(con, "site-down") == {}
    assert con.execute(
        "SELECT count(*) FROM raw.fhir_resource_versions WHERE site_id = 'site-down'"
    ).fetchone() == (0,)
