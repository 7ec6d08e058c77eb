"""`rescue status`: per site what needs attention, with exit code 5 for cron and monitoring."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from rescue_pipeline import snapshot as snapshot_module
from rescue_pipeline.cli import main
from rescue_pipeline.config import load_config
from rescue_pipeline.site_load import work_db
from rescue_pipeline.status import site_statuses

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)


@pytest.fixture
def cohort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RESCUE_PSEUDONYM_KEY", "status-test-key-0123456789")
    root = tmp_path / "c"
    assert (
        main(["synth", "--patients", "45", "--sites", "2", "--seed", "4", "--out", str(root)]) == 0
    )
    return root


def test_status_after_a_good_run_needs_no_attention(
    cohort: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(cohort / "sites.yaml")
    assert main(["status", "--config", config]) == 2  # nothing loaded yet: says what to do
    assert "run `rescue run` first" in capsys.readouterr().err
    assert main(["run", "--config", config]) == 0
    capsys.readouterr()
    assert main(["status", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "All sites loaded within 36 h, checks pass." in out and "ATTENTION" not in out
    assert "Last run: exit code 0; loads: site-a ok, site-b ok; published: site-a, site-b" in out
    assert main(["status", "--config", config, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    records = document["sites"]
    last = document["last_run"]
    assert last["exit_code"] == 0 and [p["site_id"] for p in last["loads"]] == ["site-a", "site-b"]
    assert last["quality"]["suites_sha256"] and last["publication"]["published"] == [
        "site-a", "site-b",
    ]  # fmt: skip
    assert [r["site_id"] for r in records] == ["site-a", "site-b"]
    with work_db(load_config(cohort / "sites.yaml"), read_only=True) as con:
        resources = dict(
            con.execute("SELECT site_id, count(*) FROM raw.fhir_resources GROUP BY 1").fetchall()
        )
    assert {r["site_id"]: r["resources"] for r in records} == resources
    assert all(r["publication"] == "published" and not r["stale"] for r in records)


def test_a_failed_site_and_a_stale_one_need_attention(
    cohort: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(cohort / "sites.yaml")
    assert main(["run", "--config", config]) == 0
    shutil.rmtree(cohort / "site-b")  # the site's drop folder disappears
    assert main(["run", "--config", config]) == 1
    capsys.readouterr()
    assert main(["status", "--config", config]) == 5
    out = capsys.readouterr().out
    assert "ATTENTION site-b: last load failed: site site-b:" in out
    assert "ATTENTION site-a" not in out
    loaded = load_config(cohort / "sites.yaml")
    with work_db(loaded, read_only=True) as con:
        later = site_statuses(con, loaded, now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=40))
    assert all(s.stale for s in later)
    assert later[0].attention == ["stale: last successful load 40 h ago"]


def test_a_snapshot_is_not_changed_by_later_loads(
    cohort: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(cohort / "sites.yaml")
    assert main(["run", "--config", config]) == 0
    assert main(["snapshot", "--config", config, "--cutoff", "2026-01-01"]) == 2
    assert "derived with data cut-off" in capsys.readouterr().err
    cutoff = load_config(cohort / "sites.yaml").analysis.data_cutoff
    assert cutoff is not None
    assert main(["snapshot", "--config", config, "--cutoff", cutoff.isoformat()]) == 0
    (folder,) = (cohort / "warehouse" / "snapshots").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["data_cutoff"] == cutoff.isoformat()
    assert manifest["rule_settings"]["data_cutoff"] == cutoff.isoformat()
    assert manifest["row_counts"]["analysis.adsl"] > 0 and manifest["code_version"]
    assert set(manifest["files"]) >= {
        "rescue.duckdb",
        "exports/adsl.parquet",
        "exports/adtte.parquet",
    }
    # a later load with new data changes the published warehouse, never the snapshot
    with (cohort / "site-a" / "Observation.ndjson").open("ab") as handle:
        handle.write(b'{"resourceType": "Observation", "id": "late", "status": "final"}\n')
    assert main(["run", "--config", config]) == 0
    published = cohort / "warehouse" / "rescue.duckdb"
    assert snapshot_module.verify(folder)
    assert snapshot_module._sha256(published) != manifest["files"]["rescue.duckdb"]
    for rel, digest in manifest["files"].items():
        assert snapshot_module._sha256(folder / rel) == digest
    capsys.readouterr()
    assert main(["status", "--config", config]) == 0
    assert f"Snapshot {cutoff.isoformat()} taken " in capsys.readouterr().out
    (folder / "exports" / "adsl.parquet").chmod(0o644)
    (folder / "exports" / "adsl.parquet").write_bytes(b"tampered")
    assert main(["status", "--config", config]) == 5
    assert "no longer matches its manifest" in capsys.readouterr().out
