"""Publishing: the next warehouse is written beside the published one and renamed over it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.config import load_config
from rescue_pipeline.site_load import publish_warehouse, work_db
from rescue_pipeline.warehouse import publish as publish_module
from tests.cohort import KEY, build_cohort

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cohort landed and derived per module; tests copy it."""
    config = build_cohort(tmp_path_factory.mktemp("publish") / "c", patients=40, sites=2, seed=9)
    return config[0].path.parent


@pytest.fixture
def config(built: Path, tmp_path: Path):
    shutil.copytree(built, tmp_path / "c")
    return load_config(tmp_path / "c" / "sites.yaml")


def test_published_warehouse_has_core_analysis_and_quality_and_never_raw(config) -> None:
    result = publish_warehouse(config)
    assert result.path == config.warehouse and config.warehouse.exists()
    assert not publish_module.next_path(config.warehouse).exists()
    con = duckdb.connect(str(config.warehouse), read_only=True)
    schemas = {
        s for (s,) in con.execute("SELECT DISTINCT schema_name FROM duckdb_tables()").fetchall()
    }
    assert schemas == {"core", "analysis", "quality"}  # never raw
    with work_db(config, read_only=True) as work:
        for table in ("core.subjects", "core.regimens", "analysis.adtte", "analysis.eligibility"):
            assert (
                con.execute(f"SELECT count(*) FROM {table}").fetchall()
                == work.execute(f"SELECT count(*) FROM {table}").fetchall()
            )
    storage = con.execute(
        "SELECT tags['storage_version'] FROM duckdb_databases() WHERE NOT internal"
    ).fetchall()
    assert storage == [("v1.0.0+",)]  # DuckDB 1.0 and newer open it
    comment = con.execute(
        "SELECT comment FROM duckdb_columns() WHERE table_name = 'adtte' AND column_name = 'CNSR'"
    ).fetchall()
    assert comment == [("Censor: 0 event, 1 censored.",)]


def test_a_reader_keeps_its_view_while_the_next_warehouse_is_published(config) -> None:
    publish_warehouse(config)
    reader = duckdb.connect(str(config.warehouse), read_only=True)
    before = reader.execute("SELECT count(*) FROM core.subjects").fetchall()[0][0]
    with work_db(config) as con:
        con.execute(
            "DELETE FROM core.subjects WHERE usubjid IN (SELECT usubjid FROM core.subjects LIMIT 5)"
        )
    publish_warehouse(config)
    assert (
        reader.execute("SELECT count(*) FROM core.subjects").fetchall()[0][0] == before
    )  # old file
    # another process (as an analyst's would be) opening the path now sees the new warehouse
    # (inside this process DuckDB would hand back the reader's cached instance)
    code = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(c.execute('SELECT count(*) FROM core.subjects').fetchall()[0][0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(config.warehouse)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(done.stdout) == before - 5


def test_a_failed_publish_leaves_the_published_warehouse_as_it_was(
    config, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_warehouse(config)
    original = config.warehouse.read_bytes()

    def broken(tables):
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish_module, "ddl", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        publish_warehouse(config)
    assert config.warehouse.read_bytes() == original
    monkeypatch.undo()
    publish_warehouse(config)  # and the next publish works
    assert not publish_module.next_path(config.warehouse).exists()


@pytest.mark.slow
def test_queries_on_the_published_warehouse_work_while_a_load_runs(config, tmp_path: Path) -> None:
    publish_warehouse(config)
    rescue = Path(sys.executable).parent / "rescue"
    # the key the cohort's subject ids were made with (another one is refused)
    env = {**os.environ, "RESCUE_PSEUDONYM_KEY": KEY.decode()}
    load = subprocess.Popen(
        [str(rescue), "run", "--full", "--config", str(config.path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    answers = []
    try:
        while load.poll() is None and len(answers) < 20:
            done = subprocess.run(
                [str(rescue), "query", "--config", str(config.path), "--format", "csv",
                 "SELECT count(*) FROM core.subjects"],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            answers.append(int(done.stdout.splitlines()[1]))
    finally:
        assert load.wait(timeout=300) == 0
    assert answers and len(set(answers)) == 1  # the same, whole warehouse every time
