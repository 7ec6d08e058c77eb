"""Landing into a real DuckDB file: nothing lost, nothing doubled, the right version current."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import duckdb
import orjson
import pytest

from rescue_pipeline.extract.ndjson import SourceError, discover
from rescue_pipeline.raw.chunks import classify_span
from rescue_pipeline.raw.landing import land_files, new_load_id
from rescue_pipeline.raw.workers import shutdown_pools
from rescue_pipeline.warehouse.database import open_work_db
from tests.conftest import line as ndjson_line
from tests.conftest import obs


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = open_work_db(tmp_path / "wh" / "rescue.work.duckdb")
    yield connection
    connection.close()


def land(con: duckdb.DuckDBPyConnection, folder: Path, site: str = "site-a", **kw: object):
    return land_files(con, site, discover(folder, site), load_id=new_load_id(site), **kw)


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> list[tuple]:
    return con.execute(sql, params).fetchall() if params else con.execute(sql).fetchall()


FAULTS: list[tuple[bytes, str, str | None]] = [
    (b'{"resourceType":"Observation","id":"cut","status":"fin', "not_json", None),
    (b'{"resourceType":"Patient","id":"p9","name":[{"family":"Zo\xeb"}]}', "invalid_utf8", None),
    (
        b'{"resourceType":"Observaton","id":"o7","status":"final"}',
        "unknown_resource_type",
        "resourceType",
    ),
    (orjson.dumps({k: v for k, v in obs("x").items() if k != "id"}), "invalid_id", "id"),
    (orjson.dumps({k: v for k, v in obs("o8").items() if k != "code"}), "missing_element", "code"),
    (orjson.dumps(obs("o9", value="45.2")), "wrong_type", "valueQuantity.value"),
    (
        orjson.dumps(obs("o10", effectiveDateTime="2024-02-30T10:00:00Z")),
        "invalid_date",
        "effectiveDateTime",
    ),
    (b"", "empty_line", None),
    (b"42", "not_an_object", None),
]


def test_each_fault_goes_to_quarantine_with_its_reason_and_bytes(con, write_site) -> None:
    good = [obs("o1"), obs("o2")]
    folder = write_site("site-a", {"Observation": [good[0], *[f[0] for f in FAULTS], good[1]]})
    result = land(con, folder)
    found = rows(
        con,
        "SELECT line_number, reason, element, raw_bytes, source, site_id, load_id FROM raw.quarantine ORDER BY line_number",
    )
    assert [(r[0], r[1], r[2]) for r in found] == [
        (i + 2, f[1], f[2]) for i, f in enumerate(FAULTS)
    ]
    assert [bytes(r[3]) for r in found] == [f[0] for f in FAULTS]  # the bytes exactly as received
    assert {r[4] for r in found} == {"Observation.ndjson"} and {r[5] for r in found} == {"site-a"}
    assert {r[6] for r in found} == {result.load_id}
    total = result.total()
    assert (total.received, total.accepted, total.quarantined) == (11, 2, 9)
    assert sorted(result.reasons) == sorted(f[1] for f in FAULTS)


def test_quarantine_details_name_resource_and_field(con, write_site) -> None:
    folder = write_site("site-a", {"Observation": [obs("o9", value="45.2")]})
    land(con, folder)
    [(rtype, rid, detail)] = rows(
        con, "SELECT resource_type, resource_id, detail FROM raw.quarantine"
    )
    assert (rtype, rid) == ("Observation", "o9")
    assert detail == "Observation.valueQuantity.value must be a number, got string"


def test_counts_reconcile_per_type_and_load(con, write_site) -> None:
    folder = write_site(
        "site-a",
        {
            "Observation": [obs("o1"), obs("o1"), b"not json"],
            "Patient": [{"resourceType": "Patient", "id": "p1"}, b'{"resourceType":"Patient"}'],
        },
    )
    result = land(con, folder)
    loads = rows(
        con,
        "SELECT resource_type, received, accepted, quarantined, new_versions FROM raw.loads ORDER BY 1",
    )
    assert loads == [("Observation", 3, 2, 1, 1), ("Patient", 2, 1, 1, 1)]
    assert all(r[1] == r[2] + r[3] for r in loads)
    assert (
        result.counts["Observation"].new_versions == 1
    )  # an exact duplicate is accepted, not stored twice


def test_reloading_the_same_files_adds_nothing(con, write_site) -> None:
    folder = write_site("site-a", {"Observation": [obs("o1"), obs("o2", value=12.0), b"{bad"]})
    first = land(con, folder)
    before = (
        rows(con, "SELECT count(*) FROM raw.fhir_resource_versions")[0][0],
        rows(con, "SELECT count(*) FROM raw.quarantine")[0][0],
    )
    second = land(con, folder)
    assert (second.files_read, second.files_unchanged) == (
        0,
        1,
    )  # the ledger skips the unchanged file
    full = land(con, folder, reread=True)
    assert full.files_read == 1 and full.total().received == 3 and full.total().new_versions == 0
    after = (
        rows(con, "SELECT count(*) FROM raw.fhir_resource_versions")[0][0],
        rows(con, "SELECT count(*) FROM raw.quarantine")[0][0],
    )
    assert before == after == (2, 1)
    assert first.total().new_versions == 2


def test_appended_file_lands_only_the_new_lines(con, write_site, tmp_path: Path) -> None:
    folder = write_site("site-a", {"Observation": [obs("o1"), b"{bad"]})
    land(con, folder)
    with (folder / "Observation.ndjson").open("ab") as f:
        f.write(orjson.dumps(obs("o2")) + b"\n")
    result = land(con, folder)
    assert result.total().received == 3 and result.total().new_versions == 1
    assert rows(con, "SELECT count(*) FROM raw.quarantine")[0][0] == 1


def test_newer_version_wins_by_version_then_last_updated_then_arrival(con, write_site) -> None:
    """Rule book §1: the highest meta.versionId (ties: the latest meta.lastUpdated), wherever
    it stands in a file or load."""
    folder = write_site(
        "site-a",
        {
            "Observation": [
                # late older version: v2 arrives first, v1 after it
                obs("late", value=2.0, version="2", updated="2024-02-01T00:00:00Z"),
                obs("late", value=1.0, version="1", updated="2024-01-01T00:00:00Z"),
                # a server clock set back: v3 carries an earlier lastUpdated than v2, still wins
                obs("skew", value=2.0, version="2", updated="2024-03-01T00:00:00Z"),
                obs("skew", value=3.0, version="3", updated="2024-02-28T00:00:00Z"),
                # same lastUpdated: the higher versionId wins (numerically: 10 > 9)
                obs("ver", value=10.0, version="10", updated="2024-01-01T00:00:00Z"),
                obs("ver", value=9.0, version="9", updated="2024-01-01T00:00:00Z"),
                # offsets compared as instants: 01:00+02:00 is before 00:30Z
                obs("tz", value=1.0, version=None, updated="2024-01-01T00:30:00Z"),
                obs("tz", value=2.0, version=None, updated="2024-01-01T01:00:00+02:00"),
                # nothing to go by: the later arrival wins
                obs("arr", value=1.0, version=None, updated=None),
                obs("arr", value=2.0, version=None, updated=None),
            ]
        },
    )
    land(con, folder)
    current = dict(
        rows(
            con,
            "SELECT resource_id, (payload->>'$.valueQuantity.value')::DOUBLE FROM raw.fhir_resources",
        )
    )
    assert current == {"late": 2.0, "skew": 3.0, "ver": 10.0, "tz": 1.0, "arr": 2.0}
    assert (
        rows(con, "SELECT count(*) FROM raw.fhir_resource_versions WHERE resource_id = 'late'")[0][
            0
        ]
        == 2
    )


def test_late_older_version_in_a_later_load_does_not_become_current(
    con, write_site, tmp_path: Path
) -> None:
    folder = write_site(
        "site-a",
        {"Observation": [obs("o1", value=2.0, version="2", updated="2024-02-01T00:00:00Z")]},
    )
    land(con, folder)
    (folder / "Observation.ndjson").write_bytes(
        orjson.dumps(obs("o1", value=1.0, version="1", updated="2024-01-01T00:00:00Z")) + b"\n"
    )
    land(con, folder)
    assert rows(con, "SELECT version_id FROM raw.fhir_resources")[0][0] == "2"
    assert rows(con, "SELECT count(*) FROM raw.fhir_resource_versions")[0][0] == 2


def test_sites_are_kept_apart(con, write_site) -> None:
    a = write_site("site-a", {"Observation": [obs("o1")]})
    b = write_site("site-b", {"Observation": [obs("o1")]})  # same id and bytes at another site
    land(con, a, "site-a")
    land(con, b, "site-b")
    assert rows(con, "SELECT site_id FROM raw.fhir_resources ORDER BY 1") == [
        ("site-a",),
        ("site-b",),
    ]


def test_manifest_names_the_files_and_a_missing_one_is_an_error(write_site) -> None:
    folder = write_site(
        "site-a", {"Observation": [obs("o1")], "Patient": [{"resourceType": "Patient", "id": "p"}]}
    )
    (folder / "manifest.json").write_text(
        '{"transactionTime": "2026-06-30T00:00:00Z", "output": [{"type": "Observation", "url": "https://x/files/Observation.ndjson"}]}'
    )
    found = discover(folder, "site-a")
    assert [(f.resource_type, f.label) for f in found] == [
        ("Observation", "Observation.ndjson"),
        ("Patient", "Patient.ndjson"),
    ]
    (folder / "manifest.json").write_text(
        '{"output": [{"type": "Condition", "url": "Condition.ndjson"}]}'
    )
    with pytest.raises(
        SourceError, match=r"site site-a: .*names 'Condition\.ndjson', which is missing"
    ):
        discover(folder, "site-a")
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(SourceError, match="not a Bulk Data manifest"):
        discover(folder, "site-a")


def test_missing_folder_is_a_site_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"site site-x: source folder .* does not exist"):
        discover(tmp_path / "nowhere", "site-x")


def test_crlf_line_ends_are_accepted(con, write_site) -> None:
    folder = write_site("site-a", {})
    (folder / "Patient.ndjson").write_bytes(
        b'{"resourceType":"Patient","id":"p1"}\r\n{"resourceType":"Patient","id":"p2"}\r\n'
    )
    assert land(con, folder).total().accepted == 2


def test_a_failed_load_rolls_back_whole(con, write_site, monkeypatch: pytest.MonkeyPatch) -> None:
    import rescue_pipeline.raw.landing as landing

    monkeypatch.setattr(landing, "SPAN_BYTES", 10)
    folder = write_site("site-a", {"Observation": [obs("o1"), obs("o2")]})
    calls = []

    def second_span_fails(*args: object):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return classify_span(*args)

    monkeypatch.setattr(landing, "classify_span", second_span_fails)
    with pytest.raises(RuntimeError):
        land(con, folder)  # the first span was inserted, then the load failed
    monkeypatch.undo()
    assert rows(con, "SELECT count(*) FROM raw.fhir_resource_versions")[0][0] == 0
    assert rows(con, "SELECT count(*) FROM ops.landed_files")[0][0] == 0
    assert land(con, folder).total().new_versions == 2  # the next run lands it whole


def test_large_file_crosses_batches(con, write_site, monkeypatch: pytest.MonkeyPatch) -> None:
    import rescue_pipeline.raw.landing as landing

    monkeypatch.setattr(landing, "SPAN_BYTES", 2000)
    lines = [obs(f"o{i}") for i in range(50)] + [obs("o3")]  # a duplicate across batches
    folder = write_site("site-a", {"Observation": lines})
    seen: list[int] = []
    result = land(con, folder, progress=seen.append)
    assert result.total().accepted == 51 and result.total().new_versions == 50
    assert sum(seen) == 51
    # the copy in a later span is the one dropped: the version is where it first came
    assert rows(
        con, "SELECT line_number FROM raw.fhir_resource_versions WHERE resource_id = 'o3'"
    ) == [(4,)]


def test_parallel_workers_land_exactly_what_inline_lands(
    tmp_path: Path, write_site, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rescue_pipeline.raw.landing as landing

    monkeypatch.setattr(landing, "SPAN_BYTES", 1500)
    lines = [obs(f"o{i % 17}", value=float(i % 3)) for i in range(60)] + [
        b"{bad",
        *[f[0] for f in FAULTS],
    ]
    folder = write_site("site-a", {"Observation": lines})
    query = (
        "SELECT resource_id, payload_sha256, arrival, line_number, as_received FROM raw.fhir_resource_versions ORDER BY ALL",
        "SELECT line_number, reason, raw_bytes FROM raw.quarantine ORDER BY ALL",
        "SELECT resource_type, received, accepted, quarantined, new_versions FROM raw.loads ORDER BY ALL",
        "SELECT resource_id, payload_sha256 FROM raw.fhir_resources ORDER BY ALL",
    )
    seen = []
    for workers in (0, 2):
        c = open_work_db(tmp_path / f"w{workers}.duckdb")
        land_files(c, "site-a", discover(folder, "site-a"), load_id="load-1", workers=workers)
        seen.append([rows(c, q) for q in query])
        c.close()
    assert seen[0] == seen[1]
    assert len(seen[0][0]) == 51  # 17 ids x 3 values


def test_spans_cut_only_at_line_ends(tmp_path: Path) -> None:
    from rescue_pipeline.raw.chunks import plan_spans

    path = tmp_path / "Patient.ndjson"
    body = (
        b"".join(b'{"resourceType":"Patient","id":"p%d"}\n' % i for i in range(100))
        + b'{"resourceType":"Patient","id":"last"}'
    )
    path.write_bytes(body)
    plan = plan_spans(str(path), "Patient", target_bytes=97)
    spans = plan.spans
    assert plan.lines == 101 and plan.size == len(body)
    assert plan.sha256 == hashlib.sha256(body).hexdigest()  # hashed in the same pass
    assert sum(s.length for s in spans) == len(body)
    assert len(spans) > 10
    for span in spans:
        assert span.offset == 0 or body[span.offset - 1 : span.offset] == b"\n"  # whole lines
        assert span.first_line == body[: span.offset].count(b"\n") + 1
        assert span.length >= 97 or span is spans[-1]


def test_last_line_without_newline_and_trailing_blank_line(con, write_site) -> None:
    folder = write_site("site-a", {})
    (folder / "Patient.ndjson").write_bytes(
        b'{"resourceType":"Patient","id":"p1"}\n\n{"resourceType":"Patient","id":"p2"}'
    )
    result = land(con, folder)
    assert (result.total().received, result.total().accepted) == (3, 2)
    assert rows(con, "SELECT line_number, reason FROM raw.quarantine") == [(2, "empty_line")]


def test_parallel_landing_leaves_no_spilled_files(
    tmp_path: Path, write_site, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rescue_pipeline.raw.chunks as chunks
    import rescue_pipeline.raw.landing as landing

    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(chunks, "spill_dir", lambda: str(spill))
    monkeypatch.setattr(landing, "spill_dir", lambda: str(spill))
    monkeypatch.setattr(landing, "SPAN_BYTES", 1000)
    folder = write_site("site-a", {"Observation": [obs(f"o{i}") for i in range(40)]})
    c = open_work_db(tmp_path / "w.duckdb")
    assert (
        land_files(c, "site-a", discover(folder, "site-a"), load_id="l", workers=2)
        .total()
        .new_versions
        == 40
    )
    c.close()
    assert list(spill.iterdir()) == []


def test_a_line_is_kept_as_received_beside_its_payload(con, write_site) -> None:
    """Numbers as sent (1.50, 28-digit decimals, 30-digit integers) and spacing stay in
    as_received; a line that is already its payload is not stored twice."""
    canonical = orjson.dumps(obs("o1"), option=orjson.OPT_SORT_KEYS)
    as_sent = [
        b'{"resourceType": "Observation", "id": "o2", "status": "final", '
        b'"code": {"coding": [{"system": "http://loinc.org", "code": "10334-1"}]}, '
        b'"subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-01-01", '
        b'"valueQuantity": {"value": 1.50, "unit": "U/mL"}}',
        canonical.replace(
            b'"status":"final"', b'"status":"final","x":0.1234567890123456789012345678'
        ),
        canonical.replace(
            b'"status":"final"', b'"status":"final","y":123456789012345678901234567890'
        ).replace(b'"id":"o1"', b'"id":"o4"'),
    ]
    as_sent[1] = as_sent[1].replace(b'"id":"o1"', b'"id":"o3"')
    folder = write_site("site-a", {"Observation": [canonical, *as_sent]})
    assert land(con, folder).total().new_versions == 4
    got = dict(
        rows(
            con,
            "SELECT resource_id, as_received FROM raw.fhir_resource_versions ORDER BY resource_id",
        )
    )
    assert got["o1"] is None  # the payload is the line
    for rid, line in zip(("o2", "o3", "o4"), as_sent, strict=True):
        assert got[rid].encode() == line
    [(payload,)] = rows(
        con, "SELECT payload::VARCHAR FROM raw.fhir_resource_versions WHERE resource_id = 'o2'"
    )
    assert '"value":1.5,' in payload  # what the views read and the hash is taken of


def test_a_working_database_of_an_earlier_version_gets_the_new_column(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    open_work_db(path).close()
    with duckdb.connect(str(path)) as old:  # as the version before as_received left it
        old.execute("DROP VIEW raw.fhir_resources")
        old.execute("ALTER TABLE raw.fhir_resource_versions DROP COLUMN as_received")
        old.execute("DROP TABLE ops.schema_state")  # nor did it record its definitions
    con = open_work_db(path)
    try:
        columns = [r[0] for r in rows(con, "DESCRIBE raw.fhir_resource_versions")]
        assert columns[-1] == "as_received"
        assert "as_received" in [r[0] for r in rows(con, "DESCRIBE raw.fhir_resources")]
    finally:
        con.close()


def test_a_file_rewritten_while_it_is_landed_fails_whole_and_lands_next_time(
    con, write_site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger must hold the hash of the bytes landed: a file that changes between being
    planned and being read fails the load (nothing kept), and the next load lands it whole."""
    import rescue_pipeline.raw.chunks as chunks
    import rescue_pipeline.raw.landing as landing

    monkeypatch.setattr(landing, "SPAN_BYTES", 500)
    folder = write_site("site-a", {"Observation": [obs(f"o{i}") for i in range(20)]})
    path = folder / "Observation.ndjson"
    real = chunks.classify_span
    calls = 0

    def rewrite_after_first_span(span, spill=None):
        nonlocal calls
        calls += 1
        if calls == 2:  # another process rewrites the file mid-landing
            path.write_bytes(b"".join(orjson.dumps(obs(f"n{i}")) + b"\n" for i in range(20)))
        return real(span, spill)

    monkeypatch.setattr(landing, "classify_span", rewrite_after_first_span)
    with pytest.raises(SourceError, match=r"^site site-a: Observation.ndjson changed while it"):
        land(con, folder)
    assert rows(con, "SELECT count(*) FROM raw.fhir_resource_versions") == [(0,)]
    assert rows(con, "SELECT count(*) FROM ops.landed_files") == [(0,)]
    monkeypatch.setattr(landing, "classify_span", real)
    result = land(con, folder)
    assert result.total().new_versions == 20
    [(sha, size)] = rows(con, "SELECT file_sha256, size_bytes FROM ops.landed_files")
    assert (sha, size) == (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)


def test_a_database_made_by_other_definitions_is_brought_up_to_date(tmp_path: Path) -> None:
    """Opening skips the definitions only when the file records these very ones."""
    path = tmp_path / "w.duckdb"
    open_work_db(path).close()
    with duckdb.connect(str(path)) as older:  # made by definitions without as_received
        older.execute("DROP VIEW raw.fhir_resources")
        older.execute("ALTER TABLE raw.fhir_resource_versions DROP COLUMN as_received")
        older.execute("UPDATE ops.schema_state SET ddl_sha256 = 'older definitions'")
    con = open_work_db(path)
    try:
        assert "as_received" in [r[0] for r in rows(con, "DESCRIBE raw.fhir_resources")]
        state = rows(con, "SELECT ddl_sha256 FROM ops.schema_state")
        assert len(state) == 1 and len(state[0][0]) == 64
    finally:
        con.close()


def test_a_version_in_two_files_of_one_load_is_stored_once_where_it_first_came(
    con, write_site
) -> None:
    folder = write_site("site-a", {"Observation": [obs("o1"), obs("o2")]})
    (folder / "Observation.2.ndjson").write_bytes(  # lands first: files go in name order
        (folder / "Observation.ndjson").read_bytes().split(b"\n", 1)[1] + orjson.dumps(obs("o3"))
    )
    result = land(con, folder)
    assert result.total().received == 4 and result.total().new_versions == 3
    assert rows(
        con,
        "SELECT resource_id, source, line_number FROM raw.fhir_resource_versions ORDER BY 1",
    ) == [
        ("o1", "Observation.ndjson", 1),
        ("o2", "Observation.2.ndjson", 1),
        ("o3", "Observation.2.ndjson", 2),
    ]
    loads = rows(con, "SELECT received, accepted, new_versions FROM raw.loads")
    assert loads == [(4, 4, 3)]


def test_payloads_and_lines_as_received_are_stored_with_zstd(con, write_site) -> None:
    # 1.50 is kept as received beside its payload (1.5): both long text columns get zstd,
    # a sixth of the JSON's size where DuckDB's own choice kept half and wrote it slower
    lines = [
        ndjson_line(obs(f"o{i}", value=float(i % 97))).replace(b'"value":', b'"value": ')
        for i in range(4000)
    ]
    land(con, write_site("site-a", {"Observation": lines}))
    con.execute("CHECKPOINT")
    stored = rows(
        con,
        "SELECT column_name, list(DISTINCT compression ORDER BY compression) "
        "FROM pragma_storage_info('raw.fhir_resource_versions') "
        "WHERE column_name IN ('payload', 'as_received') AND segment_type <> 'VALIDITY' "
        "GROUP BY ALL ORDER BY ALL",
    )
    assert stored == [("as_received", ["ZSTD"]), ("payload", ["ZSTD"])]


def test_the_pool_starts_early_only_for_files_that_will_surely_be_read(
    con, write_site, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rescue_pipeline.raw.landing as landing

    started: list[int] = []
    monkeypatch.setattr(landing, "start_workers", started.append)
    monkeypatch.setattr(landing, "PARALLEL_MIN_BYTES", 1000)
    folder = write_site("site-a", {"Observation": [obs(f"o{i}") for i in range(20)]})
    land(con, folder, workers=0)
    assert started == []  # the caller chose the workers
    land(con, folder)
    assert started == []  # the ledger has the file at this size: probably unchanged
    land(con, folder, reread=True)
    assert len(started) == 1  # a full reload reads it whatever the ledger says
    write_site("site-a", {"Observation": [obs(f"o{i}") for i in range(21)]})
    land(con, folder, workers=0)
    assert len(started) == 1  # the caller chose: none started
    write_site("site-a", {"Observation": [obs(f"o{i}") for i in range(22)]})
    try:
        land(con, folder)
        assert len(started) == 2  # a new size: surely new bytes
    finally:
        shutdown_pools()


def test_an_early_start_starts_every_worker_and_replaces_a_broken_pool() -> None:
    import multiprocessing

    from rescue_pipeline.raw.workers import start

    try:
        first = start(2)
        assert len(multiprocessing.active_children()) >= 2  # both spawned, not one
        os.kill(first.submit(os.getpid).result(), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not first._broken and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        with pytest.raises(BrokenProcessPool):
            first.submit(os.getpid)
        second = start(2)  # a pool that lost a process would refuse every task
        assert second is not first
        assert second.submit(os.getpid).result() > 0
    finally:
        shutdown_pools()
