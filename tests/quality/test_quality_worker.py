"""Great Expectations runs in the quality worker process; its results are the ones this process
would make itself, and the checks go on when the worker is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.quality.suites import Suite, SuiteOutOfMemory, run_suites, worker
from rescue_pipeline.quality.suites.model import CheckResult
from rescue_pipeline.quality.suites.worker import QualityWorkerError

pytestmark = pytest.mark.integration  # starts worker processes and Great Expectations

SUITE = Suite(
    name="core.example",
    layer="core",
    table="core.example",
    query=("SELECT site_id, key, value, measured_at FROM example WHERE measured_at < $data_cutoff"),
    key="key",
    expectations=(
        {
            "id": "value_present",
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "value"},
            "meta": {"severity": "critical", "description": "every row has a value"},
        },
        {
            "id": "value_in_range",
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "value", "min_value": 0, "max_value": 100},
            "meta": {"severity": "warning"},
        },
    ),
)
BROKEN = Suite(
    "core.broken", "core", "core.broken", "SELECT * FROM no_such_table", "key", SUITE.expectations
)


@pytest.fixture(autouse=True)
def no_worker_left() -> Iterator[None]:
    yield
    worker.stop()


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'Europe/Paris'")
        con.execute(
            "CREATE TABLE example AS SELECT * FROM (VALUES "
            "('site-a', 'r1', 5.0, TIMESTAMPTZ '2026-01-01 10:00:00+00'), "
            "('site-a', 'r2', NULL, TIMESTAMPTZ '2026-01-02 10:00:00+00'), "
            "('site-b', 'r3', 250.0, TIMESTAMPTZ '2026-01-03 10:00:00+00'), "
            "('site-b', 'r4', 7.5, TIMESTAMPTZ '2026-01-04 10:00:00+00')"
            ") t(site_id, key, value, measured_at)"
        )
        yield con


def _run(con: duckdb.DuckDBPyConnection) -> list[CheckResult]:
    return run_suites(
        con,
        [SUITE, BROKEN, SUITE],
        params={"data_cutoff": "2027-01-01"},
        run_id="run1",
        sites=["site-a", "site-b", "site-c"],
        digest="d",
    )


def _comparable(results: list[CheckResult]) -> list[tuple[object, ...]]:
    return [
        (r.site_id, r.check_id, r.success, r.observed_value, r.unexpected_count, r.sample_keys,
         r.failing_keys)
        for r in results
    ]  # fmt: skip


def _in_process(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> list[CheckResult]:
    with monkeypatch.context() as m:
        worker.stop()
        m.setattr(worker, "_Worker", _refused)
        m.setattr(worker, "_REFUSED", [])  # refused for this run only
        return _run(con)


def _refused() -> None:
    raise OSError("no processes here")


def test_the_worker_checks_each_site_as_this_process_would(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = _in_process(con, monkeypatch)
    worker.start()
    assert worker._WORKER and worker._WORKER[0].alive()
    process = worker._WORKER[0].process
    there = _run(con)
    assert worker._WORKER and worker._WORKER[0].process is process  # checked there, not here
    assert _comparable(there) == _comparable(here)
    # every site configured gets its results, the site with no row too; in suite order
    a_present = [
        r for r in there if r.check_id == "value_present" and r.table_name == "core.example"
    ]
    assert [(r.site_id, r.success) for r in a_present[:3]] == [
        ("site-a", False), ("site-b", True), ("site-c", True),
    ]  # fmt: skip
    in_range = [r for r in there if r.check_id == "value_in_range" and r.site_id == "site-b"]
    assert in_range[0].failing_keys == ("r3",) and not in_range[0].success
    broken = [r for r in there if r.table_name == "core.broken"]
    assert len(broken) == 2 and all(not r.success and "query failed" in (r.observed_value or "")
                                    for r in broken)  # fmt: skip
    assert [r.table_name for r in there] == (
        ["core.example"] * 6 + ["core.broken"] * 2 + ["core.example"] * 6
    )


def test_a_worker_found_dead_is_replaced_and_nothing_is_missing(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _comparable(_in_process(con, monkeypatch))
    worker.start()
    process = worker._WORKER[0].process
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _comparable(_run(con)) == expected
    assert worker._WORKER and worker._WORKER[0].process is not process


def test_a_worker_killed_while_checking_leaves_no_result_missing(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _comparable(_in_process(con, monkeypatch))
    worker.start()
    handle = worker._WORKER[0]
    real_submit = worker.submit
    calls = []

    def submit_then_kill(*args: object, **kwargs: object) -> object:
        result = real_submit(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(1)
        if len(calls) == 1 and handle.process.pid is not None:
            os.kill(handle.process.pid, signal.SIGKILL)  # requests are in its queue, unanswered
        return result

    monkeypatch.setattr(worker, "submit", submit_then_kill)
    assert _comparable(_run(con)) == expected


def test_an_error_in_the_worker_comes_back_as_one_line_naming_the_suite(
    con: duckdb.DuckDBPyConnection,
) -> None:
    odd = Suite(
        "core.odd", "core", "core.odd", "SELECT site_id, key, value FROM example", "key",
        ({"id": "odd_one", "type": "expect_nothing_of_the_kind", "kwargs": {"column": "value"}},),
    )  # fmt: skip
    worker.start()
    started = time.monotonic()
    with pytest.raises(QualityWorkerError, match=r"^suite core\.odd: .*expect_nothing_of_the_kind"):
        run_suites(con, [odd], params={}, sites=["site-a"])
    assert time.monotonic() - started < 60  # an answer, not a hang
    assert worker._WORKER and worker._WORKER[0].alive()  # and the worker goes on


def test_stop_ends_the_worker_at_once() -> None:
    worker.start()
    process = worker._WORKER[0].process
    worker.stop()
    assert not process.is_alive() and not worker._WORKER


def test_a_process_that_used_the_worker_exits_without_a_word_on_stderr(tmp_path: Path) -> None:
    """The worker's libraries make semaphores; a worker stopped without releasing them makes
    Python's resource tracker warn on the user's terminal when the run ends."""
    script = tmp_path / "run.py"
    script.write_text(
        "import duckdb\n"
        "from rescue_pipeline.quality.suites import Suite, run_suites, worker\n"
        "if __name__ == '__main__':\n"
        "    suite = Suite('core.x', 'core', 'core.x', \"SELECT 'site-a' AS site_id, 'k' AS key, "
        "1 AS v\", 'key', ({'id': 'v_present', 'type': 'expect_column_values_to_not_be_null', "
        "'kwargs': {'column': 'v'}},))\n"
        "    results = run_suites(duckdb.connect(), [suite], params={}, sites=['site-a'])\n"
        "    assert len(results) == 1 and results[0].success\n"
        "    worker.stop()\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""


def test_a_suite_out_of_memory_fails_the_step_naming_the_suite_not_as_a_finding(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """A failed check would refuse the publish as if the data were wrong."""
    greedy = Suite(
        "core.greedy", "core", "core.greedy",
        "SELECT 'site-a' AS site_id, 'k' AS key, list(i) AS value FROM range(20000000) r(i)",
        "key", SUITE.expectations,
    )  # fmt: skip
    con.execute("SET memory_limit = '32MB'")
    con.execute("SET temp_directory = ''")  # nothing to spill to
    with pytest.raises(SuiteOutOfMemory, match=r"^suite core\.greedy: Out of Memory Error"):
        run_suites(con, [SUITE, greedy], params={"data_cutoff": "2027-01-01"}, sites=["site-a"])
