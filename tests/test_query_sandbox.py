"""`rescue query` is a sandbox: hostile SQL neither writes, reads files, attaches nor installs.

Each case is a query an attacker (or a tired analyst) tried on the real warehouse files; every
one is refused with one line and exit 2, and both database files stay byte for byte the same.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rescue_pipeline.cli import main

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

KEY = "sandbox-test-key-0123456789"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sandbox")
    mp = pytest.MonkeyPatch()
    mp.setenv("RESCUE_PSEUDONYM_KEY", KEY)
    try:
        out = root / "c"
        assert (
            main(["synth", "--patients", "40", "--sites", "2", "--seed", "3", "--out", str(out)])
            == 0
        )
        assert main(["run", "--config", str(out / "sites.yaml")]) == 0
    finally:
        mp.undo()
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def query(
    capsys: pytest.CaptureFixture[str], config: Path, sql: str, *extra: str
) -> tuple[int, str, str]:
    code = main(["query", "--config", str(config), *extra, sql])
    out, err = capsys.readouterr()
    return code, out, err


HOSTILE = {
    "copy_over_the_work_db": "COPY (SELECT 1) TO '{work}'",
    "attach_read_write_and_delete": "ATTACH '{work}' AS w (READ_WRITE); DELETE FROM w.raw.quarantine",
    "read_a_local_file_as_text": "SELECT * FROM read_text('/etc/passwd')",
    "read_a_local_file_as_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "list_local_files": "SELECT * FROM glob('/etc/*')",
    "export_the_database": "EXPORT DATABASE '{out}'",
    "install_an_extension": "INSTALL httpfs",
    "load_an_extension": "LOAD httpfs",
    "switch_external_access_back_on": "SET enable_external_access = true",
    "a_write_after_a_read": "SELECT 1; DELETE FROM core.subjects",
    "a_pragma": "PRAGMA enable_profiling",
}


@pytest.mark.parametrize("work", [False, True], ids=["published", "work"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_sql_is_refused_and_changes_nothing(
    built: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, work: bool
) -> None:
    config = built / "sites.yaml"
    warehouse = built / "warehouse" / "rescue.duckdb"
    work_db = warehouse.with_name("rescue.work.duckdb")
    before = (digest(warehouse), digest(work_db))
    sql = HOSTILE[case].format(work=work_db, out=tmp_path / "dump")
    code, out, err = query(capsys, config, sql, *(["--work"] if work else []))
    assert code == 2, (case, out, err)
    assert err.startswith("error: query ") and err.count("\n") == 1  # one line
    assert (digest(warehouse), digest(work_db)) == before
    assert not (tmp_path / "dump").exists()
    assert "root:" not in out + err  # no line of /etc/passwd ever printed


def test_reading_statements_still_work(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = built / "sites.yaml"
    for sql in (
        "SELECT count(*) AS n FROM core.subjects",
        "WITH s AS (SELECT * FROM core.subjects) SELECT count(*) FROM s",
        "FROM analysis.adsl LIMIT 1",
        "DESCRIBE analysis.adtte",
        "SUMMARIZE SELECT AVAL FROM analysis.adtte",
        "EXPLAIN SELECT * FROM core.subjects",
    ):
        code, _, err = query(capsys, config, sql)
        assert code == 0 and err == "", (sql, err)


def test_a_query_past_its_deadline_is_stopped(
    built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = query(
        capsys, built / "sites.yaml",
        "SELECT count(*) FROM range(100000000000) a, range(100000) b", "--timeout", "1",
    )  # fmt: skip
    assert code == 1 and "query stopped after 1 s" in err


def test_a_large_result_streams_as_csv_and_a_table_is_capped(
    built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = query(capsys, built / "sites.yaml", "FROM range(25000)", "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "range" and len(out.splitlines()) == 25001
    code, out, _ = query(capsys, built / "sites.yaml", "FROM range(25000)", "--max-rows", "5")
    assert code == 0 and "5 rows shown; more not shown" in out


def test_export_and_km_read_the_warehouse_through_the_sandbox_and_still_write_their_files(
    built: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = str(built / "sites.yaml")
    export = ["export", "--config", config, "--format", "csv", "--out", str(tmp_path / "e")]
    assert main(export) == 0
    assert (tmp_path / "e" / "adtte.csv").read_text().startswith("STUDYID,")
    assert main(["km", "--config", config, "--out", str(tmp_path / "km")]) == 0
    assert any((tmp_path / "km").glob("*.png"))
    capsys.readouterr()
