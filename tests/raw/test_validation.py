"""Full R4B validation beside the landing: findings recorded, nothing moved, each version once."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

from rescue_pipeline.extract.ndjson import discover
from rescue_pipeline.raw.landing import land_files, new_load_id
from rescue_pipeline.raw.validation import validate_payload, validate_pending
from rescue_pipeline.warehouse.database import open_work_db
from tests.conftest import line, obs


def test_validate_payload_outcomes() -> None:
    assert validate_payload("Observation", line(obs("o1")).decode()) == ("valid", None)
    outcome, findings = validate_payload("Observation", line(obs("o1", ca125Comment="x")).decode())
    assert outcome == "invalid" and findings == "ca125Comment: Extra inputs are not permitted"
    outcome, findings = validate_payload(
        "SubstancePolymer", '{"resourceType":"SubstancePolymer","id":"s"}'
    )
    assert outcome == "not_in_r4b" and "not defined by the R4B models" in (findings or "")


def test_findings_never_repeat_values() -> None:
    resource = {"resourceType": "Patient", "id": "p1", "birthDate": "1961-04-17", "gender": 7}
    outcome, findings = validate_payload("Patient", line(resource).decode())
    assert outcome == "invalid" and findings is not None
    assert (
        "gender" in findings
        and "1961-04-17" not in findings
        and "7" not in findings.split(":", 1)[1]
    )


def test_validation_runs_once_per_version_and_moves_nothing(tmp_path: Path, write_site) -> None:
    con = open_work_db(tmp_path / "rescue.work.duckdb")
    folder = write_site(
        "site-a",
        {
            "Observation": [obs("o1"), obs("o2", ca125Comment="x")],
            "SubstancePolymer": [{"resourceType": "SubstancePolymer", "id": "s1"}],
        },
    )
    land_files(con, "site-a", discover(folder, "site-a"), load_id=new_load_id("site-a"))
    first = validate_pending(con)
    assert first.validated == 3 and dict(first.outcomes) == {
        "valid": 1,
        "invalid": 1,
        "not_in_r4b": 1,
    }
    assert validate_pending(con).validated == 0
    assert (
        con.execute("SELECT count(*) FROM raw.fhir_resources").fetchall()[0][0] == 3
    )  # the invalid one stays
    con.close()


def test_worker_processes_validate_as_this_process_does(tmp_path: Path, write_site) -> None:
    """Several batches through two worker processes: every version once, same outcomes and
    findings as validating inline, each against its own version."""
    resources = [obs(f"o{i}", **({"ca125Comment": "x"} if i % 7 == 0 else {})) for i in range(60)]
    folder = write_site("site-a", {"Observation": resources})
    results = {}
    for workers in (0, 2):
        con = open_work_db(tmp_path / f"w{workers}.duckdb")
        land_files(con, "site-a", discover(folder, "site-a"), load_id=new_load_id("site-a"))
        with patch("rescue_pipeline.raw.validation.BATCH", 8):  # 8 batches, several in flight
            outcome = validate_pending(con, workers=workers)
        assert outcome.validated == 60 and outcome.outcomes["invalid"] == 9
        results[workers] = con.execute(
            "SELECT resource_id, outcome, findings FROM raw.version_validation ORDER BY ALL"
        ).fetchall()
        con.close()
    assert results[0] == results[2]
    assert ("o7", "invalid", "ca125Comment: Extra inputs are not permitted") in results[2]
    assert ("o8", "valid", None) in results[2]


def test_duckdb_leaves_the_validation_workers_memory_while_they_validate(
    write_site, write_config, monkeypatch
) -> None:
    """The workers (the FHIR models, a few batches each) run beside DuckDB."""
    from rescue_pipeline import site_load
    from rescue_pipeline.config import load_config
    from tests.warehouse.test_memory_limits import shown

    folder = write_site("site-a", {"Observation": [obs("o1"), obs("o2")]})
    site = {"id": "site-a", "source": {"kind": "ndjson", "path": str(folder)}}
    limits = {"memory_limit": "900MiB"}
    config = load_config(write_config({"study_id": "RESCUE", "duckdb": limits, "sites": [site]}))

    def limit(con) -> str:
        ((value,),) = con.execute("SELECT current_setting('memory_limit')").fetchall()
        return str(value)

    seen: list[str] = []
    validate = site_load.validate_pending

    def spy(con, **kwargs):
        seen.append(limit(con))
        return validate(con, **kwargs)

    monkeypatch.setattr(site_load, "validate_pending", spy)
    with site_load.work_db(config) as con:
        land_files(con, "site-a", discover(folder, "site-a"), load_id=new_load_id("site-a"))
    assert site_load.validate_site(config).validated == 2
    assert seen == [shown(600)]  # 900 MiB, less at most a third
