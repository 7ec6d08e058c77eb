"""REST search extract against a scripted local server: paging, outcomes, bad pages, and what
the raw layer and the watermarks hold afterwards."""

from __future__ import annotations

import datetime as dt
import logging
import random
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import orjson
import pytest

from rescue_pipeline.config import FhirSource, SiteConfig
from rescue_pipeline.extract.auth import NoAuth
from rescue_pipeline.extract.http import FhirHttpClient, HttpError, RetryPolicy
from rescue_pipeline.extract.rest import PageError
from rescue_pipeline.extract.watermarks import advance_marks, format_mark, read_marks
from rescue_pipeline.site_load import fetch_and_land
from rescue_pipeline.warehouse.database import open_work_db
from tests.conftest import obs
from tests.extract.conftest import FakeTime, Reply, ScriptedServer


def bundle(*resources: dict[str, object], next_url: str | None = None, outcome: str | None = None):
    entries: list[dict[str, object]] = [
        {"resource": r, "search": {"mode": "match"}} for r in resources
    ]
    if outcome:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"diagnostics": outcome}],
                },
                "search": {"mode": "outcome"},
            }
        )
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_work_db(tmp_path / "rescue.work.duckdb")
    yield connection
    connection.close()


def site(url: str, **extra: object) -> SiteConfig:
    extra = {"keep_extract_days": 1, **extra}  # the tests read the fetched files afterwards
    source = FhirSource(base_url=url, types=("Observation",), overlap_seconds=300, **extra)  # type: ignore[arg-type]
    return SiteConfig(id="site-r", source=source)


def client(fake: FakeTime) -> FhirHttpClient:
    return FhirHttpClient(
        "site-r",
        NoAuth(),
        timeout_seconds=5,
        policy=RetryPolicy(max_attempts=3),
        sleep=fake.sleep,
        clock=fake.clock,
        rng=random.Random(1),
    )


def versions(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT resource_id, version_id FROM raw.fhir_resource_versions ORDER BY ALL"
    ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def test_pages_are_followed_landed_and_the_mark_advanced(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    url = scripted_server.url
    scripted_server.on(
        "/Observation",
        Reply(200, bundle(obs("o1", updated="2026-01-02T10:00:00.000Z"), next_url=f"{url}/page2")),
    )
    scripted_server.on(
        "/page2",
        Reply(200, bundle(obs("o2", updated="2026-01-03T10:00:00Z"), outcome="_foo ignored")),
    )
    caplog.set_level(logging.WARNING)
    result = fetch_and_land(
        con,
        site(url, search={"Observation": {"code": "10334-1"}}),
        "L1",
        work_dir=tmp_path,
        client=client(fake_time),
    )
    assert result.counts["Observation"].new_versions == 2
    assert versions(con) == [("o1", "1"), ("o2", "1")]
    first = parse_qs(urlsplit(scripted_server.seen[0].path).query)
    assert first == {"_count": ["200"], "code": ["10334-1"]}  # first load: no _lastUpdated
    assert any("_foo ignored" in r.getMessage() for r in caplog.records)
    written = (tmp_path / "extract" / "site-r" / "L1" / "Observation.ndjson").read_bytes()
    assert written.count(b"\n") == 2 and b"OperationOutcome" not in written
    marks = read_marks(con, "site-r")
    assert marks == {"Observation": dt.datetime(2026, 1, 3, 9, 55, tzinfo=dt.UTC)}


def test_incremental_sends_the_mark_in_utc_and_full_ignores_it(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    mark = dt.datetime(2026, 1, 3, 11, 55, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    advance_marks(con, "site-r", {"Observation": mark}, load_id="L0")
    scripted_server.on("/Observation", Reply(200, bundle()))
    fetch_and_land(
        con, site(scripted_server.url), "L1", work_dir=tmp_path, client=client(fake_time)
    )
    fetch_and_land(
        con, site(scripted_server.url), "L2", work_dir=tmp_path, full=True, client=client(fake_time)
    )
    queries = [parse_qs(urlsplit(s.path).query) for s in scripted_server.seen]
    assert queries[0]["_lastUpdated"] == ["gt2026-01-03T09:55:00.000Z"]
    assert "_lastUpdated" not in queries[1]
    assert read_marks(con, "site-r")["Observation"] == mark  # nothing seen: the mark stays


def test_a_page_that_is_not_json_fails_and_keeps_raw_and_mark(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    url = scripted_server.url
    old = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    advance_marks(con, "site-r", {"Observation": old}, load_id="L0")
    scripted_server.on("/Observation", Reply(200, bundle(obs("o1"), next_url=f"{url}/page2")))
    scripted_server.on("/page2", Reply(200, b"<html>proxy error</html>"))
    with pytest.raises(PageError) as err:
        fetch_and_land(con, site(url), "L1", work_dir=tmp_path, client=client(fake_time))
    assert str(err.value).startswith(f"site site-r: GET {url}/page2: page is not JSON")
    assert versions(con) == []
    assert read_marks(con, "site-r") == {"Observation": old}


def test_a_page_that_is_not_a_bundle_fails(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    scripted_server.on("/Observation", Reply(200, obs("o1")))
    with pytest.raises(PageError, match=r"page is not a Bundle \(got 'Observation'\)"):
        fetch_and_land(
            con, site(scripted_server.url), "L1", work_dir=tmp_path, client=client(fake_time)
        )


def test_a_next_link_to_another_server_is_refused(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    scripted_server.on(
        "/Observation", Reply(200, bundle(obs("o1"), next_url="https://elsewhere.example/p2"))
    )
    with pytest.raises(PageError, match="next link points to another server"):
        fetch_and_land(
            con, site(scripted_server.url), "L1", work_dir=tmp_path, client=client(fake_time)
        )


def test_overlap_repeats_add_no_versions(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    """A resource re-fetched inside the overlap window lands as nothing new."""
    o1 = obs("o1", updated="2026-01-03T10:00:00Z")
    o2 = obs("o2", updated="2026-01-03T10:01:00Z")
    scripted_server.on("/Observation", Reply(200, bundle(o1)), Reply(200, bundle(o1, o2)))
    fetch_and_land(
        con, site(scripted_server.url), "L1", work_dir=tmp_path, client=client(fake_time)
    )
    second = fetch_and_land(
        con, site(scripted_server.url), "L2", work_dir=tmp_path, client=client(fake_time)
    )
    assert second.counts["Observation"].received == 2
    assert second.counts["Observation"].new_versions == 1
    assert read_marks(con, "site-r")["Observation"] == dt.datetime(2026, 1, 3, 9, 56, tzinfo=dt.UTC)


def test_format_mark_is_utc_z_with_milliseconds():
    value = dt.datetime(2026, 1, 3, 11, 0, 0, 123999, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert format_mark(value) == "2026-01-03T10:00:00.123Z"


def test_a_resource_type_that_is_a_path_names_no_file_and_is_quarantined(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    hostile = [
        {**obs("o1"), "resourceType": "../../../escaped"},
        {**obs("o2"), "resourceType": "/tmp/escaped-abs"},
        {**obs("o3"), "resourceType": "Ada Lovelace"},
    ]
    scripted_server.on("/Observation", Reply(200, bundle(obs("o0"), *hostile)))
    result = fetch_and_land(
        con, site(scripted_server.url), "L1", work_dir=tmp_path, client=client(fake_time)
    )
    assert result.counts["Observation"].accepted == 1
    assert not [p for p in tmp_path.parent.rglob("*escaped*")]
    assert not Path("/tmp/escaped-abs.ndjson").exists()
    folder = tmp_path / "extract" / "site-r" / "L1"
    assert sorted(p.name for p in folder.iterdir()) == ["Observation.ndjson"]
    rows = con.execute("SELECT reason, detail FROM raw.quarantine ORDER BY line_number").fetchall()
    assert [r for r, _ in rows] == ["unknown_resource_type"] * 3
    # the quarantine names the element and the reason, never the value sent
    assert not any("escaped" in d or "Lovelace" in d for _, d in rows)


def test_next_links_that_never_end_stop_at_search_max_pages(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    url = scripted_server.url
    scripted_server.on("/Observation", Reply(200, bundle(obs("o0"), next_url=f"{url}/p1")))
    for n in range(1, 6):  # every next link is new: no loop to notice
        scripted_server.on(f"/p{n}", Reply(200, bundle(obs(f"o{n}"), next_url=f"{url}/p{n + 1}")))
    with pytest.raises(PageError, match=r"after 3 pages \(search_max_pages 3\)"):
        fetch_and_land(
            con, site(url, search_max_pages=3), "L1", work_dir=tmp_path, client=client(fake_time)
        )
    assert len(scripted_server.seen) == 3
    assert versions(con) == []  # the load failed whole: nothing landed, marks stay


def test_a_page_larger_than_max_response_bytes_fails_the_request(
    scripted_server: ScriptedServer, fake_time: FakeTime
):
    padding = "x" * 2**20
    scripted_server.on("/Observation", Reply(200, bundle({**obs("o1"), "note": padding})))
    small = FhirHttpClient(
        "site-r", NoAuth(), policy=RetryPolicy(max_attempts=1), max_response_bytes=2**19
    )
    with small, pytest.raises(HttpError, match="max_response_bytes 524288"):
        small.get(f"{scripted_server.url}/Observation")


def test_a_server_that_trickles_its_answer_is_cut_off_at_max_request_seconds():
    class Trickle(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):  # one byte at a time, well inside every socket timeout
                try:
                    self.request.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.05)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        slow = FhirHttpClient(
            "site-r",
            NoAuth(),
            timeout_seconds=5,
            policy=RetryPolicy(max_attempts=1),
            max_request_seconds=0.5,
        )
        started = time.monotonic()
        with slow, pytest.raises(HttpError, match="still arriving after max_request_seconds"):
            slow.get(f"http://127.0.0.1:{server.server_address[1]}/Observation")
        assert time.monotonic() - started < 5
    finally:
        server.shutdown()
        server.server_close()


def test_a_resource_lands_as_the_server_wrote_its_numbers_and_repeated_keys_are_quarantined(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    """The Bundle is read without turning 1.50 into 1.5 or a 30-digit integer into a float, and
    a resource that repeats a key reaches the landing with both values, to be quarantined."""
    exact = (
        b'{"resourceType":"Observation","id":"o1","status":"final",'
        b'"code":{"coding":[{"system":"http://loinc.org","code":"10334-1"}]},'
        b'"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01",'
        b'"valueQuantity":{"value":1.50,"unit":"U/mL"},'
        b'"extension":[{"url":"http://example.org/n","valueInteger64":123456789012345678901234567890}]}'
    )
    repeated = exact.replace(
        b'"id":"o1","status":"final"', b'"id":"o2","status":"final","status":"amended"'
    )
    page = (
        b'{"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": '
        + exact
        + b', "search": {"mode": "match"}}, {"resource": '
        + repeated
        + b"}]}"
    )
    scripted_server.on("/Observation", Reply(200, page, {"Content-Type": "application/fhir+json"}))
    fetch_and_land(
        con, site(scripted_server.url), "L1", work_dir=tmp_path, client=client(fake_time)
    )
    written = (tmp_path / "extract" / "site-r" / "L1" / "Observation.ndjson").read_bytes()
    assert written.splitlines() == [exact, repeated]
    assert con.execute(
        "SELECT resource_id, as_received FROM raw.fhir_resource_versions"
    ).fetchall() == [("o1", exact.decode())]
    assert con.execute("SELECT resource_id, reason FROM raw.quarantine").fetchall() == [
        ("o2", "duplicate_key")
    ]


def test_by_default_the_fetched_files_are_gone_once_the_load_has_landed(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    scripted_server.on("/Observation", Reply(200, bundle(obs("o1"))))
    result = fetch_and_land(
        con,
        site(scripted_server.url, keep_extract_days=0),
        "L1",
        work_dir=tmp_path,
        client=client(fake_time),
    )
    assert result.counts["Observation"].new_versions == 1
    assert list((tmp_path / "extract" / "site-r").iterdir()) == []


def test_the_whole_load_is_bounded_retries_and_all(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    """A server that keeps answering 503 Retry-After within every per-request bound still
    cannot hold the site's load past load_max_seconds; the marks stay."""
    busy = Reply(503, b"", {"Retry-After": "20"})
    scripted_server.on("/Observation", busy)
    with pytest.raises(HttpError, match=r"the site's load ran past load_max_seconds 30 s$"):
        fetch_and_land(
            con,
            site(scripted_server.url, load_max_seconds=30),
            "L1",
            work_dir=tmp_path,
            client=client(fake_time),
        )
    assert fake_time.now <= 60  # stopped at the first attempt past the deadline
    assert read_marks(con, "site-r") == {}


def test_a_resource_orjson_cannot_write_is_quarantined_and_a_repeated_entry_key_fails_the_page(
    scripted_server: ScriptedServer,
    fake_time: FakeTime,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
):
    good = orjson.dumps(obs("o1"))
    lone = good.replace(b'"id":"o1"', b'"id":"o2","note":[{"text":"\\ud800"}]')
    page = b'{"resourceType":"Bundle","type":"searchset","entry":[{"resource":' + good
    page += b'},{"resource":' + lone + b"}]}"
    scripted_server.on("/Observation", Reply(200, page))
    fetch_and_land(
        con, site(scripted_server.url), "L1", work_dir=tmp_path, client=client(fake_time)
    )
    assert con.execute("SELECT resource_id FROM raw.fhir_resource_versions").fetchall() == [("o1",)]
    [(reason,)] = con.execute("SELECT reason FROM raw.quarantine").fetchall()
    assert reason in ("not_json", "invalid_utf8")  # the line landed, and was quarantined
    twice = b'{"resourceType":"Bundle","type":"searchset","entry":[{"resource":' + good
    twice += b',"resource":' + good.replace(b'"o1"', b'"o3"') + b"}]}"
    scripted_server.on("/Observation", Reply(200, twice))
    with pytest.raises(
        PageError, match=r"a Bundle entry repeats a key \(a resource would be lost\)"
    ):
        fetch_and_land(
            con, site(scripted_server.url), "L2", work_dir=tmp_path, client=client(fake_time)
        )
