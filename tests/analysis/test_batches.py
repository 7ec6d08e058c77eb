"""The derivation reads and decides subjects a batch at a time (memory grows with the batch, not
the cohort); the batches never change a result."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import rescue_pipeline.analysis.build as build
from rescue_pipeline.site_load import work_db
from rescue_pipeline.warehouse.analysis_tables import ANALYSIS_TABLES
from tests.cohort import TODAY, build_cohort


def _analysis_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    return {
        t.fullname: con.execute(f"SELECT * FROM {t.fullname} ORDER BY ALL").fetchall()
        for t in ANALYSIS_TABLES
        if t.name != "derivation_runs"
    }


@pytest.mark.slow
def test_subjects_derived_in_many_batches_give_the_tables_of_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _truth = build_cohort(tmp_path / "c", patients=240, seed=17, fault_rate=0.05)
    with work_db(config) as con:
        whole = _analysis_tables(con)  # 230-odd subjects: one batch
        monkeypatch.setattr(build, "SUBJECTS_PER_BATCH", 17)
        result = build.derive_analysis(con, config, today=TODAY)
        batched = _analysis_tables(con)
        batches = con.execute("SELECT max(batch) + 1 FROM screen").fetchall()[0][0]
    assert batches >= 12
    assert result.rows["eligibility"] == len(whole["analysis.eligibility"]) > 3000
    assert batched == whole
