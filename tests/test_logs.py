"""Structured logs: one JSON object per line, and never a secret or a person's data in them."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from rescue_pipeline.cli import main

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

PSEUDONYM_KEY = "logs-test-pseudonym-key-8f3a1c"
TOKEN = "tok-logs-test-5be2d1f09c"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_full_run_logs_json_lines_without_secrets_or_phi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESCUE_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.setenv("SITE_X_TOKEN", TOKEN)
    root = tmp_path / "c"
    assert (
        main(["synth", "--patients", "60", "--sites", "2", "--seed", "8", "--out", str(root)]) == 0
    )
    config = root / "sites.yaml"
    text = config.read_text()  # plus a live site with a bearer token that is down
    config.write_text(
        text
        + f"  - id: site-x\n    source: {{kind: fhir, base_url: 'http://127.0.0.1:{_free_port()}/R4', "
        "max_attempts: 1, allow_insecure_http: true, auth: {kind: bearer, token_env: SITE_X_TOKEN}}\n"
    )
    log = tmp_path / "run.jsonl"
    assert main(["--log-json", str(log), "run", "--config", str(config)]) == 1  # site-x failed
    capsys.readouterr()
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    events = {(r.get("event"), r.get("site_id")) for r in records}
    assert {("load_succeeded", "site-a"), ("load_succeeded", "site-b"),
            ("load_failed", "site-x"), ("quality_checked", None),
            ("published", None)} <= events  # fmt: skip
    landed = next(r for r in records if r.get("event") == "load_succeeded")
    assert landed["received"] == landed["accepted"] + landed["quarantined"] > 0
    # nothing secret, nobody identifiable
    everything = log.read_text()
    assert TOKEN not in everything and PSEUDONYM_KEY not in everything
    forbidden: set[str] = set()
    for site in ("site-a", "site-b"):
        for line in (root / site / "Patient.ndjson").read_bytes().splitlines():
            try:
                patient = json.loads(line)
            except ValueError:
                continue
            if not isinstance(patient, dict):
                continue
            for name in patient.get("name", []) if isinstance(patient.get("name"), list) else []:
                forbidden |= {n for n in [name.get("family"), *name.get("given", [])] if n}
            forbidden |= {i.get("value") for i in patient.get("identifier", []) if i.get("value")}
            if isinstance(patient.get("birthDate"), str):
                forbidden.add(patient["birthDate"])
    assert len(forbidden) > 100
    assert not sorted(f for f in forbidden if re.search(rf"\b{re.escape(f)}\b", everything))


def test_a_secret_in_a_message_is_masked() -> None:
    import logging

    from rescue_pipeline.logs import JsonFormatter, RedactSecrets

    record = logging.LogRecord("rescue_pipeline.x", logging.ERROR, "", 0, "token %s leaked",
                               (TOKEN,), None)  # fmt: skip
    record.detail = f"Bearer {TOKEN}"
    assert RedactSecrets([TOKEN]).filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "token [redacted] leaked" and line["detail"] == "Bearer [redacted]"
