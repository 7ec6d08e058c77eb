"""A failing core build says which stage and statement failed with DuckDB's own first line,
not DuckDB's advice ("See also https://duckdb.org/...") and never a quoted value."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import rescue_pipeline.core.build as build
from rescue_pipeline.core.build import CoreBuildError, build_core
from rescue_pipeline.site_load import work_db
from rescue_pipeline.warehouse.statements import duckdb_first_line
from tests.cohort import KEY, TODAY, build_cohort


def test_a_failing_stage_is_named_with_duckdbs_first_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _truth = build_cohort(tmp_path / "c", patients=20, sites=1, seed=3)
    real = build._sql
    monkeypatch.setattr(
        build,
        "_sql",
        lambda name: (
            "CREATE TABLE core_stage.ok AS SELECT 1 AS x;\n"
            "-- the second statement fails\n"
            "INSERT INTO core.ca125_measurements BY NAME SELECT * FROM core_stage.no_such_table"
            if name == "03_ca125.sql"
            else real(name)
        ),
    )
    with work_db(config) as con, pytest.raises(CoreBuildError) as err:
        build_core(con, config, key=KEY, today=TODAY)
    message = str(err.value)
    assert message.startswith(
        "stage 03_ca125: INSERT core.ca125_measurements: Catalog Error: "
        "Table with name no_such_table"
    )
    assert "\n" not in message and "See also" not in message


def test_a_quoted_value_in_duckdbs_message_is_left_out() -> None:
    with pytest.raises(duckdb.Error) as err:
        duckdb.sql("SELECT 'Smith'::INTEGER").fetchall()
    assert "Smith" in str(err.value)  # DuckDB quotes the value it could not convert
    line = duckdb_first_line(err.value)
    assert "Smith" not in line and line.startswith("Conversion Error: Could not convert string")
