"""The `rescue` command line end to end on temporary folders: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

import rescue_pipeline.quality.suites as suites_module
from rescue_pipeline.analysis import define_xml
from rescue_pipeline.cli import main
from rescue_pipeline.dagster_defs.keys import RAW_VALIDATION

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESCUE_PSEUDONYM_KEY", "cli-test-key-0123456789")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def synthesised_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthesised cohort per module (60 patients, 2 sites), never run: tests copy it."""
    root = tmp_path_factory.mktemp("cli") / "c"
    argv = ["synth", "--patients", "60", "--sites", "2", "--seed", "3", "--out", str(root)]
    assert main(argv) == 0
    return root


@pytest.fixture
def synthesised(synthesised_once: Path, tmp_path: Path) -> Path:
    """A copy of the module's cohort for this test alone (its paths are relative)."""
    shutil.copytree(synthesised_once, tmp_path / "c")
    return tmp_path / "c"


def test_synth_writes_the_contracted_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    synthesised = tmp_path / "c"
    argv = ["synth", "--patients", "60", "--sites", "2", "--seed", "3", "--out", str(synthesised)]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "for 60 patients at 2 sites" in out
    assert (synthesised / "ground_truth.json").exists()
    assert (synthesised / "sites.yaml").exists()
    for site in ("site-a", "site-b"):
        manifest = json.loads((synthesised / site / "manifest.json").read_text())
        for entry in manifest["output"]:
            assert (synthesised / site / entry["url"]).exists()


def test_run_then_query_the_working_database(
    synthesised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(synthesised / "sites.yaml")
    code, out, err = run(capsys, "run", "--config", config)
    assert code == 0, err
    assert "Landed (latest load per site)" in out and "site-b" in out
    code, out, _ = run(
        capsys,
        "query",
        "--work",
        "--config",
        config,
        "--format",
        "json",
        "SELECT site_id, sum(received) AS received, sum(accepted + quarantined) AS landed FROM raw.loads GROUP BY ALL ORDER BY 1",
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["site_id"] for r in rows] == ["site-a", "site-b"]
    assert all(r["received"] == r["landed"] > 0 for r in rows)
    code, out, _ = run(
        capsys,
        "query",
        "--work",
        "--config",
        config,
        "--format",
        "csv",
        "SELECT 1 AS one, 'x' AS two",
    )
    assert out.splitlines() == ["one,two", "1,x"]
    code, out, _ = run(capsys, "query", "--work", "--config", config, "SELECT 42 AS answer")
    assert "answer" in out and "42" in out and "(1 rows)" in out
    # a second run reads nothing new
    code, out, _ = run(capsys, "run", "--config", config, "--site", "site-a")
    assert code == 0 and "Unchanged since the last load" in out


def test_query_is_read_only(synthesised: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(synthesised / "sites.yaml")
    assert run(capsys, "run", "--config", config)[0] == 0
    code, _, err = run(capsys, "query", "--work", "--config", config, "DELETE FROM raw.loads")
    assert code == 2 and err.startswith("error: query refused:") and "read-only" in err


def test_query_without_a_published_warehouse_says_what_to_do(
    synthesised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "query", "--config", str(synthesised / "sites.yaml"), "SELECT 1")
    assert code == 2 and "no database at" in err and "--work" in err


def test_a_broken_site_fails_alone(synthesised: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((synthesised / "sites.yaml").read_text())
    data["sites"].append({"id": "site-z", "source": {"kind": "ndjson", "path": "missing-folder"}})
    (synthesised / "sites.yaml").write_text(yaml.safe_dump(data))
    code, out, err = run(capsys, "run", "--config", str(synthesised / "sites.yaml"))
    assert code == 1
    assert "error: site site-z: source folder" in err and "does not exist" in err
    assert "Traceback" not in err
    assert "Published: site-a, site-b\n" in out  # never called published when it did not load
    assert "Not loaded this run: site-z" in out
    code, out, _ = run(
        capsys,
        "query",
        "--work",
        "--config",
        str(synthesised / "sites.yaml"),
        "--format",
        "json",
        "SELECT site_id, status, message FROM ops.runs ORDER BY site_id",
    )
    runs = json.loads(out)
    assert [(r["site_id"], r["status"]) for r in runs] == [
        ("site-a", "succeeded"),
        ("site-b", "succeeded"),
        ("site-z", "failed"),
    ]
    assert "does not exist" in runs[2]["message"]


def test_configuration_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "sites.yaml"
    bad.write_text("study_id: RESCUE\nsites:\n  - {id: site-a, source: {kind: ftp, path: x}}\n")
    code, _, err = run(capsys, "run", "--config", str(bad))
    assert code == 2 and err.count("\n") == 1
    assert "site 'site-a': source.kind: unknown source kind 'ftp'" in err
    monkeypatch.delenv("RESCUE_CONFIG", raising=False)
    code, _, err = run(capsys, "run")
    assert code == 2 and "pass --config" in err


def test_an_unreachable_bulk_site_fails_with_site_url_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sites.yaml"
    config.write_text(
        "study_id: RESCUE\nsites:\n"
        "  - {id: site-r, source: {kind: bulk, base_url: 'http://127.0.0.1:9/R4', max_attempts: 1}}\n"
    )
    code, _, err = run(capsys, "run", "--config", str(config))
    assert code == 1 and "site site-r: GET http://127.0.0.1:9/R4/$export?_type=Patient," in err
    assert "cannot connect" in err and "Traceback" not in err


def test_an_unreachable_fhir_site_fails_with_site_url_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sites.yaml"
    config.write_text(
        "study_id: RESCUE\nsites:\n"
        "  - {id: site-r, source: {kind: fhir, base_url: 'http://127.0.0.1:9/R4', max_attempts: 1}}\n"
    )
    code, _, err = run(capsys, "run", "--config", str(config))
    assert code == 1 and "site site-r: GET http://127.0.0.1:9/R4/Patient" in err
    assert "cannot connect" in err and "Traceback" not in err


def test_bad_synth_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "synth", "--patients", "0", "--out", str(tmp_path / "x"))
    assert code == 2 and "error: synth: patients must be at least 1" in err


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--out", str(tmp_path / "demo"), "--patients", "90")
    assert code == 0, err
    assert (tmp_path / "demo" / "sites.yaml").exists()
    assert (tmp_path / "demo" / "warehouse" / "rescue.work.duckdb").exists()
    for expected in (
        "site-a",
        "site-b",
        "site-c",
        "quarantined",
        "Dagster UI:",
        "RESCUE_PSEUDONYM_KEY=$RESCUE_PSEUDONYM_KEY "  # this test's own key: named, not shown
        f"{Path(sys.executable).parent}/dagster dev -w {(tmp_path / 'demo').resolve()}/"
        "workspace.yaml",
        f"{Path(sys.executable).parent}/rescue query --work",
        "core.subjects",
        "Eligibility:",
        "PFS:",
        "Published: site-a, site-b, site-c",
        f"Sponsors' report: {tmp_path / 'demo' / 'report' / 'sponsors' / 'index.html'}",
        "Data queries per site:",
    ):
        assert expected in out
    assert (tmp_path / "demo" / "report" / "data-queries" / "site-b" / "queries.csv").exists()
    assert "landing site-c" in err  # per-stage progress lines
    # no library's progress output: errors and our stage lines stay readable
    assert "Calculating Metrics" not in err and "it/s]" not in err and "%|" not in err
    # the demo's Dagster instance has the runs, one per site
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(tmp_path / "demo" / "dagster_home"))
    runs = instance.get_runs()  # newest first
    assert len(runs) == 5  # one per site, then core to report, then the validation
    # the named jobs the schedules and the UI run, never an ephemeral asset job
    assert [r.job_name for r in reversed(runs)] == ["site_load"] * 3 + ["replay", "validate"]
    assert len({r.tags["rescue/run"] for r in runs}) == 1  # one run report
    validated = instance.get_latest_materialization_event(RAW_VALIDATION)
    assert validated is not None and validated.run_id == runs[0].run_id
    assert "Validated: " in out and "new versions" in out
    from dagster import DagsterEventType

    last = runs[1]
    evaluations = instance.get_records_for_run(
        last.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    assert len(evaluations) > 20  # every core/analysis expectation shows on its table
    fresh = [
        e.event_log_entry.dagster_event.event_specific_data.asset_check_evaluation
        if hasattr(e.event_log_entry.dagster_event.event_specific_data, "asset_check_evaluation")
        else e.event_log_entry.dagster_event.event_specific_data
        for e in evaluations
    ]
    freshness = [f for f in fresh if f.check_name == "sites_loaded_recently"]
    assert len(freshness) == 1 and freshness[0].passed  # evaluated after the loads, not later
    # rerun: idempotent, nothing new landed
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path / "demo"), "--patients", "90")
    assert code == 0 and "Unchanged since the last load" in out


def test_a_full_reload_reports_the_one_full_load_it_ran(
    synthesised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(synthesised / "sites.yaml")
    assert run(capsys, "run", "--config", config)[0] == 0
    work = synthesised / "warehouse" / "rescue.work.duckdb"
    with duckdb.connect(str(work), read_only=True) as con:
        [(first,)] = con.execute(
            "SELECT sum(received) FROM raw.loads WHERE site_id = 'site-a'"
        ).fetchall()
    code, out, err = run(capsys, "run", "--full", "--site", "site-a", "--config", config)
    assert code == 0, err
    assert "Unchanged since the last load" not in out  # the full load, not an empty one after it
    totals = next(line.split() for line in out.splitlines() if line.startswith("  all "))
    assert int(totals[1]) == first  # every line read again
    with duckdb.connect(str(work), read_only=True) as con:
        loads = con.execute(
            "SELECT job, body->>'full', (body->>'received')::INT FROM ops.run_reports "
            "WHERE part = 'load' AND report_id = (SELECT arg_max(report_id, recorded_at) "
            "FROM ops.run_reports)"
        ).fetchall()
        runs = con.execute("SELECT count(*) FROM ops.runs WHERE site_id = 'site-a'").fetchall()
    assert loads == [("site_full_reload", "true", first)]
    assert runs == [(2,)]  # the first load and the full one, nothing after it


def test_run_needs_the_pseudonym_key_and_lands_nothing_without_it(
    synthesised: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESCUE_PSEUDONYM_KEY")
    code, _, err = run(capsys, "run", "--config", str(synthesised / "sites.yaml"))
    assert code == 2 and "RESCUE_PSEUDONYM_KEY is not set" in err
    assert not (synthesised / "warehouse" / "rescue.work.duckdb").exists()


def test_run_builds_core_and_prints_its_counts(
    synthesised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "run", "--config", str(synthesised / "sites.yaml"))
    assert code == 0, err
    assert "Core tables (built in" in out and "core.subjects" in out and "core.regimens" in out
    code, out, _ = run(
        capsys,
        "query",
        "--work",
        "--config",
        str(synthesised / "sites.yaml"),
        "--format",
        "json",
        "SELECT count(*) AS n FROM core.subjects",
    )
    assert json.loads(out)[0]["n"] > 40


def test_report_writes_the_sponsors_site_and_each_sites_queries(
    synthesised: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = str(synthesised / "sites.yaml")
    code, out, err = run(capsys, "report", "--config", config, "--out", str(tmp_path / "r"))
    assert code == 2 and "run `rescue run` first" in err
    assert run(capsys, "run", "--config", config)[0] == 0
    code, out, err = run(capsys, "report", "--config", config, "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert f"Sponsors' report: {tmp_path / 'r' / 'sponsors' / 'index.html'}" in out
    assert "  site-a: " in out and " open  " in out
    assert (tmp_path / "r" / "sponsors" / "site-site-b.html").exists()
    assert (tmp_path / "r" / "data-queries" / "site-a" / "index.html").exists()


def test_dictionary_is_written_from_the_table_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, _ = run(capsys, "dictionary", "--out", str(tmp_path / "dd"))
    assert code == 0
    md = (tmp_path / "dd" / "data-dictionary.md").read_text()
    page = (tmp_path / "dd" / "data-dictionary.html").read_text()
    assert "## core.ca125_measurements" in md and "| value_u_per_ml | DOUBLE" in md
    assert "Value in U/mL (UCUM conversion)" in md
    assert (
        "<h2 id='core.subjects'>core.subjects</h2>" in page and "raw.fhir_resource_versions" in page
    )


def test_export_and_km_after_a_run(
    synthesised: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = str(synthesised / "sites.yaml")
    code, _, err = run(
        capsys, "export", "--config", config, "--format", "xpt", "--out", str(tmp_path / "x")
    )
    assert code == 2 and "run `rescue run` first" in err
    assert run(capsys, "run", "--config", config)[0] == 0
    for fmt, suffix in (("xpt", "xpt"), ("parquet", "parquet"), ("csv", "csv")):
        code, out, err = run(
            capsys, "export", "--config", config, "--format", fmt, "--out", str(tmp_path / fmt)
        )
        assert code == 0, err
        assert (tmp_path / fmt / f"adtte.{suffix}").exists() and (
            tmp_path / fmt / "define.json"
        ).exists()
        assert "ADSL" in out and "ADELIG" in out
        for name in ("define.xml", "define.html", "define.json"):
            assert str(tmp_path / fmt / name) in out
        define_xml.validate(tmp_path / fmt / "define.xml")  # the demo's export is Define-XML 2.1
    code, out, err = run(capsys, "km", "--config", config, "--out", str(tmp_path / "km"))
    assert code == 0, err
    assert (tmp_path / "km" / "km_pfs.png").exists() and "analysts only" in out


def test_query_reads_the_published_warehouse_which_has_no_raw_layer(
    synthesised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(synthesised / "sites.yaml")
    assert run(capsys, "run", "--config", config)[0] == 0
    code, out, _ = run(
        capsys,
        "query",
        "--config",
        config,
        "--format",
        "json",
        "SELECT count(*) AS n FROM analysis.adsl",
    )
    assert code == 0 and json.loads(out)[0]["n"] > 40
    code, _, err = run(capsys, "query", "--config", config, "SELECT count(*) FROM raw.loads")
    assert code == 2 and "query failed" in err


def _strict_suite(folder: Path, query: str, column: str, allowed: list[str]) -> None:
    folder.mkdir()
    suite = {
        "name": "strict",
        "meta": {"layer": "core", "table": "core.subjects", "query": query, "key": "key"},
        "expectations": [
            {
                "id": "only_arm_a",
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": column, "value_set": allowed},
                "meta": {"severity": "critical", "description": "only arm A (a test rule)"},
            }
        ],
    }
    (folder / "strict.json").write_text(json.dumps(suite))


def test_a_critical_check_failing_at_one_site_holds_it_back_with_exit_code_3(
    synthesised: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = str(synthesised / "sites.yaml")
    assert run(capsys, "run", "--config", config)[0] == 0
    published = synthesised / "warehouse" / "rescue.duckdb"
    before = duckdb.connect(str(published), read_only=True)
    kept = before.execute("SELECT count(*) FROM core.subjects WHERE site_id = 'site-a'").fetchall()
    before.close()
    folder = tmp_path / "expectations"
    _strict_suite(  # fails only where site-a has arm B subjects
        folder,
        "SELECT site_id, usubjid AS key, CASE WHEN site_id = 'site-a' THEN arm ELSE 'A' END AS arm "
        "FROM core.subjects WHERE arm IS NOT NULL",
        "arm",
        ["A"],
    )
    monkeypatch.setattr(suites_module, "suites_folder", lambda: folder)  # another gate
    code, out, err = run(capsys, "run", "--config", config)
    assert code == 3
    assert "Held back: site-a (data of " in out and "Published: site-b" in out
    assert "error: site site-a held back, its last published data kept: " in err
    assert "core.subjects expect_column_values_to_be_in_set at site-a" in err
    code, out, _ = run(capsys, "query", "--config", config, "--format", "csv",
                       "SELECT count(*) FROM core.subjects WHERE site_id = 'site-a'")  # fmt: skip
    assert code == 0 and int(out.splitlines()[1]) == kept[0][0]


def test_a_critical_check_failing_for_no_one_site_refuses_the_publish_with_exit_code_3(
    synthesised: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "expectations"
    _strict_suite(folder, "SELECT site_id, usubjid AS key FROM core.no_such_table", "arm", ["A"])
    monkeypatch.setattr(suites_module, "suites_folder", lambda: folder)  # another gate
    code, _, err = run(capsys, "run", "--config", str(synthesised / "sites.yaml"))
    assert code == 3
    assert (
        "error: publish refused: " in err
        and "core.subjects expect_column_values_to_be_in_set" in err
    )
    assert "all sites" in err
    assert not (synthesised / "warehouse" / "rescue.duckdb").exists()


def test_a_part_the_run_report_could_not_record_is_said_and_fails_the_run(
    synthesised: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publish succeeded but its part of the report was not written (a full disk, say):
    the run says so, exits 1, and still says whose data were published."""
    from rescue_pipeline import run_report

    real = run_report.record

    def record(con, *, part, **kw):  # type: ignore[no-untyped-def]
        if isinstance(part, run_report.PublicationPart):
            raise OSError("No space left on device")
        return real(con, part=part, **kw)

    monkeypatch.setattr(run_report, "record", record)
    code, out, err = run(capsys, "run", "--config", str(synthesised / "sites.yaml"))
    assert code == 1
    assert "error: publication: done, but its part of the run report is missing" in err
    assert "Published: site-a, site-b" in out  # read from quality.publications instead


def test_a_failing_step_is_said_once_and_the_stored_report_agrees(
    synthesised: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rescue_pipeline.report.render as render

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the plotting library failed")

    monkeypatch.setattr(render, "write_report", broken)
    config = str(synthesised / "sites.yaml")
    code, out, err = run(capsys, "run", "--config", config)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: sponsors' report: RuntimeError: the plotting library failed"]
    assert "Published: site-a, site-b" in out
    assert run(capsys, "status", "--config", config)[1].count("Last run: exit code 1") == 1
