"""Analysts on DuckDB 1.x open the published warehouse: checked with the real 1.0.0 and newest 1.x.

Each reader is its own small virtual environment installed from requirements/duckdb1*.lock
(`.ci/run` makes them and sets RESCUE_DUCKDB1_PYTHONS); without them the test is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.site_load import publish_warehouse
from tests.cohort import build_cohort

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

READERS = [p for p in os.environ.get("RESCUE_DUCKDB1_PYTHONS", "").split(os.pathsep) if p]
HINT = (
    "no DuckDB 1.x reader: python3 -m venv .venv-duckdb1 && .venv-duckdb1/bin/pip install "
    "--require-hashes --no-deps -r requirements/duckdb1.lock, then "
    "RESCUE_DUCKDB1_PYTHONS=$PWD/.venv-duckdb1/bin/python"
)

READ = """
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
tables = con.execute(
    "SELECT schema_name || '.' || table_name FROM duckdb_tables() ORDER BY 1"
).fetchall()
counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for (t,) in tables}
adtte = con.execute(
    "SELECT USUBJID, PARAMCD, CAST(ADT AS VARCHAR), CNSR, AVAL FROM analysis.adtte ORDER BY ALL"
).fetchall()
print(json.dumps({"version": duckdb.__version__, "counts": counts, "adtte": adtte}))
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = build_cohort(tmp_path_factory.mktemp("duckdb1"), patients=40, sites=2, seed=9)[0]
    return publish_warehouse(config).path


@pytest.mark.integration
@pytest.mark.skipif(not READERS, reason=HINT)
@pytest.mark.parametrize("reader", READERS, ids=lambda p: Path(p).parents[1].name)
def test_duckdb_1x_reads_every_table_and_the_same_values(published: Path, reader: str) -> None:
    done = subprocess.run(
        [reader, "-c", READ, str(published)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    got = json.loads(done.stdout)
    assert got["version"].startswith("1."), got["version"]
    con = duckdb.connect(str(published), read_only=True)
    tables = con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() ORDER BY 1"
    ).fetchall()
    want = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for (t,) in tables}
    assert got["counts"] == want
    assert "analysis.adtte" in want and want["analysis.adtte"] > 0
    adtte = con.execute(
        "SELECT USUBJID, PARAMCD, CAST(ADT AS VARCHAR), CNSR, AVAL FROM analysis.adtte ORDER BY ALL"
    ).fetchall()
    assert [tuple(r) for r in got["adtte"]] == [tuple(r) for r in adtte]
