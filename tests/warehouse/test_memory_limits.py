"""DuckDB's memory is bounded by design: a limit from this machine (or a container's cgroup), or
the size or share sites.yaml gives, is set on every connection to the working database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.config import ConfigError, DuckDBConfig, load_config
from rescue_pipeline.machine import cgroup_memory_limit, usable_memory
from rescue_pipeline.site_load import work_db
from rescue_pipeline.warehouse.database import (
    MIN_MEMORY,
    memory_beside,
    memory_limit_bytes,
    open_work_db,
)

GIB = 2**30


@pytest.mark.parametrize(
    ("setting", "usable", "expected"),
    [
        ("25%", 24 * GIB, 6 * GIB),
        ("50%", 8 * GIB, 4 * GIB),
        ("2GB", 24 * GIB, 2 * 10**9),
        ("1500MiB", None, 1500 * 2**20),
        ("1.5 GiB", 64 * GIB, int(1.5 * GIB)),
        ("1%", 4 * GIB, MIN_MEMORY),  # 41 MB would not run a build: the floor
        ("25%", None, GIB // 2),  # the machine says nothing: a quarter of 2 GiB
    ],
)
def test_the_memory_limit_is_a_size_or_a_share_of_what_the_process_may_use(
    setting: str, usable: int | None, expected: int
) -> None:
    assert memory_limit_bytes(setting, usable) == expected


def test_a_containers_limit_is_read_and_no_limit_is_none(tmp_path: Path) -> None:
    v2, v1, unlimited = tmp_path / "v2", tmp_path / "v1", tmp_path / "unlimited"
    v2.write_text("3221225472\n")
    v1.write_text("9223372036854771712\n")  # cgroup v1's "no limit"
    unlimited.write_text("max\n")
    assert cgroup_memory_limit((v2,)) == 3 * GIB
    assert cgroup_memory_limit((v1,)) is None
    assert cgroup_memory_limit((unlimited, tmp_path / "absent")) is None
    assert cgroup_memory_limit((unlimited, v2)) == 3 * GIB


def test_this_machine_says_how_much_memory_there_is() -> None:
    usable = usable_memory()
    assert usable is not None and usable > MIN_MEMORY


def test_the_working_database_is_opened_with_the_limit_threads_and_spill_folder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rescue.work.duckdb"
    limits = DuckDBConfig(memory_limit="700MiB", threads=1, temp_directory=tmp_path / "spill")
    con = open_work_db(path, limits=limits)
    try:
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() "
                "WHERE name IN ('memory_limit', 'threads', 'temp_directory', 'enable_progress_bar')"
            ).fetchall()
        )
    finally:
        con.close()
    assert settings["memory_limit"] in ("700.0 MiB", "734.0 MB")
    assert settings["threads"] == "1"
    assert settings["temp_directory"] == str(tmp_path / "spill")
    assert settings["enable_progress_bar"] == "false"  # no bar drawn over the CLI's stages


def _limit(con: duckdb.DuckDBPyConnection) -> str:
    ((value,),) = con.execute("SELECT current_setting('memory_limit')").fetchall()
    return str(value)


def shown(mib: int) -> str:
    """How DuckDB shows a limit of `mib` MiB (it rounds: 1205 MiB is "1.1 GiB")."""
    with duckdb.connect() as scratch:
        scratch.execute(f"SET memory_limit = '{mib}MiB'")
        return _limit(scratch)


LIMITS = DuckDBConfig(memory_limit="900MiB")


@pytest.fixture
def work(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A working database opened with LIMITS."""
    with open_work_db(tmp_path / "rescue.work.duckdb", limits=LIMITS) as con:
        yield con


def test_duckdb_leaves_a_reserve_inside_the_block_and_has_its_whole_limit_after(
    work: duckdb.DuckDBPyConnection,
) -> None:
    assert _limit(work) == shown(900)
    with memory_beside(work, LIMITS, 200 * 2**20):
        assert _limit(work) == shown(700)
        assert _limit(work.cursor()) == shown(700)  # the database's limit, every cursor's
    assert _limit(work) == shown(900)
    with memory_beside(work, LIMITS, 10 * GIB):
        assert _limit(work) == shown(600)  # at most a third is left to the other process
    small = DuckDBConfig(memory_limit="300MiB")
    with memory_beside(work, small, 200 * 2**20):
        assert _limit(work) == shown(256)  # never below DuckDB's floor
    assert _limit(work) == shown(300)


def test_the_whole_limit_comes_back_after_an_error_even_in_a_failed_transaction(
    work: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(duckdb.BinderException), memory_beside(work, LIMITS, 200 * 2**20):
        work.execute("SELECT no_such_column")
    assert _limit(work) == shown(900)
    work.execute("BEGIN")
    with pytest.raises(duckdb.BinderException), memory_beside(work, LIMITS, 200 * 2**20):
        work.execute("SELECT no_such_column")  # the transaction is aborted now
    work.execute("ROLLBACK")
    assert _limit(work) == shown(900)


def test_when_duckdb_cannot_free_enough_the_block_runs_at_the_whole_limit() -> None:
    """Lowering the limit is an economy: memory DuckDB cannot give back (an in-memory table,
    nowhere to spill) never fails the block, nor a transaction the caller holds open."""
    limits = DuckDBConfig(memory_limit="400MiB")
    with duckdb.connect(config={"memory_limit": "400MiB", "temp_directory": ""}) as con:
        con.execute(
            "CREATE TEMP TABLE filler AS SELECT repeat('x', 1000) || i AS s FROM range(300000) r(i)"
        )
        con.execute("BEGIN")
        with memory_beside(con, limits, 200 * 2**20):
            assert _limit(con) == shown(400)
            assert con.execute("SELECT count(*) FROM filler").fetchall() == [(300000,)]
        con.execute("COMMIT")
        assert _limit(con) == shown(400)


def test_by_default_a_twentieth_of_the_machine_and_a_spill_folder_beside_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rescue.work.duckdb"
    con = open_work_db(path)
    try:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        temp = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    finally:
        con.close()
    share_mib = max((usable_memory() or 0) * 5 // 100 // 2**20, 256)
    assert limit.endswith("GiB") or limit.endswith("MiB")
    number, unit = float(limit.split()[0]), limit.split()[1]
    # DuckDB shows one decimal, cut (5.88 GiB reads 5.8 GiB)
    assert number * (1024 if unit == "GiB" else 1) == pytest.approx(share_mib, abs=103)
    assert temp == str(tmp_path / "rescue.work.duckdb.tmp")


def test_sites_yaml_sets_the_limits_relative_to_the_file(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(
        {
            "study_id": "RESCUE",
            "duckdb": {"memory_limit": "3GB", "threads": 2, "temp_directory": "spill"},
            "sites": [{"id": "site-a", "source": {"kind": "ndjson", "path": "a"}}],
        }
    )
    config = load_config(path)
    assert config.duckdb == DuckDBConfig("3GB", 2, path.parent / "spill")
    with work_db(config) as con:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert limit == "2.7 GiB"  # 3 GB = 2,861 MiB


@pytest.mark.parametrize("value", ["lots", "0GB", "150%", "2 gigabytes", "-1GB", "25"])
def test_a_memory_limit_that_is_not_a_size_or_share_is_a_configuration_error(
    write_config: Callable[..., Path], value: str
) -> None:
    path = write_config(
        {
            "study_id": "RESCUE",
            "duckdb": {"memory_limit": value},
            "sites": [{"id": "site-a", "source": {"kind": "ndjson", "path": "a"}}],
        }
    )
    with pytest.raises(ConfigError, match=r"duckdb\.memory_limit"):
        load_config(path)
