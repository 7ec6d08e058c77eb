"""The command line as a user meets it: a version, the same --config on every command, help for
every option, and one clear line for the mistakes people make."""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline import __version__
from rescue_pipeline.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"rescue {__version__}"
    assert __version__ != "0+unknown"  # read from the installed package


def test_every_command_accepts_config_and_every_option_has_help() -> None:
    commands = _subparsers(build_parser())
    assert {"synth", "demo", "run", "export", "km", "status", "snapshot", "report",
            "dictionary", "query"} <= set(commands)  # fmt: skip
    for name, parser in commands.items():
        options = {o for a in parser._actions for o in a.option_strings}
        assert "--config" in options, name
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"rescue {name} {action.option_strings or action.dest}: no help"


def test_an_unwritable_out_is_one_line_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["synth", "--patients", "5", "--out", "/proc/nope"],
        ["dictionary", "--config", "ignored.yaml", "--out", "/proc/nope/x"],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, argv
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert lines == [f"error: --out {argv[-1]}: cannot create the directory "
                         "(No such file or directory)"], err  # fmt: skip
        assert "Traceback" not in err and "FileNotFoundError" not in err


def test_a_raw_table_queried_without_work_hints_at_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "wh" / "rescue.duckdb"
    warehouse.parent.mkdir()
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA analysis; CREATE TABLE analysis.adsl (USUBJID VARCHAR)")
    config = tmp_path / "sites.yaml"
    config.write_text(
        "study_id: RESCUE\nwarehouse: wh/rescue.duckdb\n"
        "sites:\n  - {id: site-a, source: {kind: ndjson, path: data}}\n"
    )
    code = main(["query", "--config", str(config), "SELECT * FROM raw.loads"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().endswith("(the raw, ops and staging tables are in the working database: "
                                "add --work)")  # fmt: skip
    assert len(err.strip().splitlines()) == 1


def test_a_run_that_cannot_start_leaves_no_lock_and_no_warehouse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESCUE_PSEUDONYM_KEY", raising=False)
    config = tmp_path / "sites.yaml"
    config.write_text(
        "study_id: RESCUE\nwarehouse: wh/rescue.duckdb\n"
        "sites:\n  - {id: site-a, source: {kind: ndjson, path: data}}\n"
    )
    code = main(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: RESCUE_PSEUDONYM_KEY is not set")
    assert not (tmp_path / "wh").exists()  # neither a lock file nor a database


def test_out_that_is_a_file_and_a_negative_timeout_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["dictionary", "--out", str(a_file)]) == 2
    assert f"--out {a_file}: is a file, not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["query", "--timeout", "-1", "SELECT 1"])
    assert exit_.value.code == 2
    assert "must be 0 (never) or more" in capsys.readouterr().err
