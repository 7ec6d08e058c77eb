"""Classifying the next site's files ahead: the same raw layer as without, nothing stale taken,
nothing left behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rescue_pipeline.raw.landing as landing
from rescue_pipeline.extract.ndjson import discover
from rescue_pipeline.raw import ahead
from rescue_pipeline.raw.chunks import SPILL_PREFIX, spill_dir
from rescue_pipeline.raw.workers import pool as worker_pool
from rescue_pipeline.raw.workers import shutdown_pools
from rescue_pipeline.warehouse.database import open_work_db
from tests.conftest import obs

SITES = ("site-a", "site-b", "site-c")
QUERIES = (
    "SELECT site_id, resource_id, payload_sha256, arrival, source, line_number, as_received "
    "FROM raw.fhir_resource_versions ORDER BY ALL",
    "SELECT site_id, source, line_number, reason, raw_bytes FROM raw.quarantine ORDER BY ALL",
    "SELECT site_id, resource_type, received, accepted, quarantined, new_versions "
    "FROM raw.loads ORDER BY ALL",
    "SELECT site_id, source, file_sha256, size_bytes, lines FROM ops.landed_files ORDER BY ALL",
)


@pytest.fixture(autouse=True)
def small_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(landing, "SPAN_BYTES", 1500)  # many spans from a few lines
    monkeypatch.setattr(landing, "PARALLEL_MIN_BYTES", 10_000)  # each site's file is above
    yield
    ahead.discard()
    shutdown_pools()


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sites whose loads took a chunk classified ahead."""
    seen: list[str] = []
    original = ahead.take_chunk

    def spy(site_id: str, span: object) -> object:
        found = original(site_id, span)  # type: ignore[arg-type]
        if found is not None:
            seen.append(site_id)
        return found

    monkeypatch.setattr(ahead, "take_chunk", spy)
    return seen


def write_sites(write_site, variant: int = 0) -> dict[str, Path]:
    folders = {}
    for n, site in enumerate(SITES):
        # 120 lines: about 20 spans a site, more than are classified ahead (AHEAD_SPANS)
        lines: list[object] = [obs(f"o{i}", value=float(i + n)) for i in range(120 + variant)]
        lines += [b"{cut", obs("o3", value=float(3 + n))]  # quarantined; a version twice
        folders[site] = write_site(site, {"Observation": lines})
    return folders


def land_all(
    path: Path,
    folders: dict[str, Path],
    *,
    expect: bool,
    workers: int | None = 2,
    after: Callable[[str], None] = lambda site: None,
) -> list[list[tuple]]:
    """Each site in turn, as `rescue run` lands them: with or without the next one's files
    named ahead; `after(site)` once each site has landed."""
    con = open_work_db(path)
    try:
        if expect:
            for site in SITES:
                ahead.expect(site, discover(folders[site], site))
        for site in SITES:
            landing.land_files(
                con, site, discover(folders[site], site), load_id=f"load-{site}", workers=workers
            )
            after(site)
        ahead.discard()
        return [con.execute(q).fetchall() for q in QUERIES]
    finally:
        con.close()


def test_the_raw_layer_is_the_same_with_chunks_classified_ahead(
    tmp_path: Path, write_site, taken: list[str]
) -> None:
    folders = write_sites(write_site)
    plain = land_all(tmp_path / "plain.duckdb", folders, expect=False)
    assert taken == []
    ahead_ = land_all(tmp_path / "ahead.duckdb", folders, expect=True)
    assert set(taken) == {"site-b", "site-c"}  # the later sites did take chunks made ahead
    assert ahead_ == plain
    assert len(plain[0]) == 3 * 120 and len(plain[1]) == 3  # o3 once a site; {cut quarantined


def test_the_landing_s_own_choice_of_workers_takes_the_work_begun_ahead(
    tmp_path: Path, write_site, taken: list[str]
) -> None:
    folders = write_sites(write_site)
    plain = land_all(tmp_path / "plain.duckdb", folders, expect=False, workers=0)
    assert land_all(tmp_path / "ahead.duckdb", folders, expect=True, workers=None) == plain
    assert set(taken) == {"site-b", "site-c"}


def test_nothing_is_begun_for_a_site_that_will_land_without_workers(
    tmp_path: Path, write_site, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = write_sites(write_site)
    con = open_work_db(tmp_path / "w.duckdb")
    try:
        for site in SITES:
            ahead.expect(site, discover(folders[site], site))
        monkeypatch.setattr(landing, "PARALLEL_MIN_BYTES", 10**9)  # site-b's load: inline
        landing.land_files(
            con, "site-a", discover(folders["site-a"], "site-a"), load_id="a", workers=2
        )
        assert not ahead._STARTED
    finally:
        con.close()


def test_a_source_fetched_when_it_loads_gets_its_turn_in_the_order(
    tmp_path: Path, write_site
) -> None:
    folders = write_sites(write_site)
    con = open_work_db(tmp_path / "w.duckdb")
    try:
        ahead.expect("site-a", discover(folders["site-a"], "site-a"))
        ahead.expect("site-rest", [])  # a REST or Bulk source: its files come when it loads
        ahead.expect("site-c", discover(folders["site-c"], "site-c"))
        landing.land_files(
            con, "site-a", discover(folders["site-a"], "site-a"), load_id="a", workers=2
        )
        assert not ahead._STARTED  # site-c is not next: nothing held for it through a fetch
    finally:
        con.close()


def test_a_worker_killed_between_two_loads_costs_neither_the_next_site_nor_its_data(
    tmp_path: Path, write_site, taken: list[str]
) -> None:
    folders = write_sites(write_site)
    plain = land_all(tmp_path / "plain.duckdb", folders, expect=False)

    def kill_a_worker(site: str) -> None:
        if site == "site-a":  # the next site's spans are being classified: a worker dies
            ahead._STARTED["site-b"].worker.join()  # type: ignore[union-attr]
            pool = worker_pool(2)
            os.kill(next(iter(pool._processes)), signal.SIGKILL)
            deadline = time.monotonic() + 30
            while not pool._broken and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.05)  # as when it died during the commit

    assert land_all(tmp_path / "w.duckdb", folders, expect=True, after=kill_a_worker) == plain
    assert set(taken) == {"site-b", "site-c"}


def test_a_file_rewritten_after_it_was_classified_ahead_lands_as_it_is_now(
    tmp_path: Path, write_site
) -> None:
    folders = write_sites(write_site)
    con = open_work_db(tmp_path / "w.duckdb")
    try:
        for site in ("site-a", "site-b"):
            ahead.expect(site, discover(folders[site], site))
        landing.land_files(
            con, "site-a", discover(folders["site-a"], "site-a"), load_id="a", workers=2
        )
        assert ahead._STARTED["site-b"].chunks  # site-b's spans are being classified
        # site-b's file was hashed and classified during site-a's load: now it changes
        write_site("site-b", {"Observation": [obs(f"n{i}") for i in range(30)]})
        landing.land_files(
            con, "site-b", discover(folders["site-b"], "site-b"), load_id="b", workers=2
        )
        ids = con.execute(
            "SELECT DISTINCT left(resource_id, 1) FROM raw.fhir_resource_versions "
            "WHERE site_id = 'site-b'"
        ).fetchall()
        assert ids == [("n",)]
        assert con.execute(
            "SELECT lines FROM ops.landed_files WHERE site_id = 'site-b'"
        ).fetchall() == [(30,)]
    finally:
        con.close()


def test_nothing_is_begun_for_a_site_whose_files_the_ledger_has(
    tmp_path: Path, write_site, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = write_sites(write_site)
    land_all(tmp_path / "w.duckdb", folders, expect=False)
    planned: list[str] = []
    original = ahead.plan_spans
    monkeypatch.setattr(
        ahead, "plan_spans", lambda path, *a: planned.append(path) or original(path, *a)
    )
    land_all(tmp_path / "w.duckdb", folders, expect=True)  # the nightly: nothing new
    assert planned == []
    land_all(tmp_path / "w.duckdb", write_sites(write_site, variant=1), expect=True)
    assert len(planned) == 2  # a line more at site-b and site-c: surely new, begun ahead


def test_work_begun_for_a_site_that_never_loads_is_dropped_with_its_files(
    tmp_path: Path, write_site
) -> None:
    def ours() -> set[str]:
        prefix = f"{SPILL_PREFIX}{os.getpid()}-"
        return {n for n in os.listdir(spill_dir()) if n.startswith(prefix)}

    folders = write_sites(write_site)
    before = ours()
    con = open_work_db(tmp_path / "w.duckdb")
    try:
        for site in SITES:
            ahead.expect(site, discover(folders[site], site))
        landing.land_files(
            con, "site-a", discover(folders["site-a"], "site-a"), load_id="a", workers=2
        )
        assert len(ours() - before) == 1  # site-b's classified spans wait in their folder
        # site-b's load failed before it landed anything; site-c loads next
        landing.land_files(
            con, "site-c", discover(folders["site-c"], "site-c"), load_id="c", workers=2
        )
        assert ours() == before
        assert not ahead._STARTED  # nothing begun again for a site whose turn is over
    finally:
        con.close()
