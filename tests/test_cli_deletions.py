"""Deletions at the command line: `rescue run` says how many a site reported, `rescue status`
shows per site the resources deleted there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rescue_pipeline.cli import main

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESCUE_PSEUDONYM_KEY", "cli-test-key-0123456789")


def test_run_and_status_show_the_deletions(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "c"
    # a clean cohort: the synthetic site deletes nothing of its own
    argv = ["synth", "--patients", "12", "--sites", "1", "--seed", "5", "--fault-rate", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    site = out / "site-a"
    assert not (site / "deleted").exists()
    pid = json.loads((site / "Patient.ndjson").read_text().splitlines()[0])["id"]
    (site / "deleted").mkdir()
    entry = {"request": {"method": "DELETE", "url": f"Patient/{pid}"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    (site / "deleted" / "Patient.ndjson").write_text(json.dumps(bundle) + "\n")
    capsys.readouterr()
    code = main(["run", "--config", str(out / "sites.yaml")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "  site-a: 1 deletions reported by the site (raw.deletions)" in printed
    main(["status", "--config", str(out / "sites.yaml"), "--format", "json"])
    [status] = json.loads(capsys.readouterr().out)["sites"]
    assert (status["site_id"], status["deleted"]) == ("site-a", 1)
