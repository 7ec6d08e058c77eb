"""The asset graph, snapshotted so that any change to it shows in review.

Regenerate after an intended change with: UPDATE_SNAPSHOTS=1 pytest tests/dagster_defs
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from rescue_pipeline.config import load_config
from rescue_pipeline.dagster_defs.definitions import build_definitions

SNAPSHOT = Path(__file__).parent.parent / "data" / "asset_graph.json"
ROOT = Path(__file__).resolve().parents[2]


def _config(write_config: Callable[..., Path], sites: list[str]) -> Path:
    return write_config(
        {
            "study_id": "RESCUE",
            "sites": [{"id": s, "source": {"kind": "ndjson", "path": s}} for s in sites],
        }
    )


def graph(defs: dg.Definitions) -> dict[str, object]:
    asset_graph = defs.resolve_asset_graph()
    out: dict[str, object] = {}
    for node in sorted(asset_graph.asset_nodes, key=lambda n: n.key.to_user_string()):
        key = node.key
        partitions = node.partitions_def
        out[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": sorted(partitions.get_partition_keys()) if partitions else None,
            "checks": sorted(c.name for c in node.check_keys),
            "kinds": sorted(node.kinds),
        }
    return out


def test_asset_graph_matches_the_snapshot(write_config: Callable[..., Path]) -> None:
    config = load_config(_config(write_config, ["site-a", "site-b", "site-c"]))
    current = graph(build_definitions(config))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_a_new_site_is_a_configuration_change_only(write_config: Callable[..., Path]) -> None:
    config = load_config(_config(write_config, ["site-a", "site-q"]))
    nodes = graph(build_definitions(config))
    assert nodes["raw/fhir_resources"]["partitions"] == ["site-a", "site-q"]  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.integration  # starts `dagster definitions validate`
def test_dagster_definitions_validate_passes(write_config: Callable[..., Path]) -> None:
    """A site added to sites.yaml: the code location validates and lists its schedule and
    sensor, with no code change."""
    path = _config(write_config, ["site-a", "site-q"])
    env = {**os.environ, "RESCUE_CONFIG": str(path), "DAGSTER_HOME": str(path.parent / "dh")}
    (path.parent / "dh").mkdir()
    (path.parent / "dh" / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    dagster = Path(sys.executable).parent / "dagster"
    outputs = {}
    for command in (["definitions", "validate"], ["schedule", "list"], ["sensor", "list"]):
        done = subprocess.run(
            [str(dagster), *command, "-w", str(ROOT / "workspace.yaml")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[command[0]] = done.stderr + done.stdout
    assert "All code locations passed validation" in outputs["definitions"]
    assert "Schedule: nightly_site_q [STOPPED]" in outputs["schedule"]
    assert "Sensor: drops_site_q [STOPPED]" in outputs["sensor"]


@pytest.mark.slow
@pytest.mark.integration  # starts `dagster definitions validate`
def test_dagster_definitions_validate_fails_clearly_without_a_config(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RESCUE_CONFIG"}
    env["DAGSTER_HOME"] = str(tmp_path)
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [
            str(dagster),
            "definitions",
            "validate",
            "-m",
            "rescue_pipeline.dagster_defs.definitions",
            "-a",
            "defs",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "set RESCUE_CONFIG to the sites.yaml" in done.stderr + done.stdout


def test_column_descriptions_survive_the_uis_markdown(write_config: Callable[..., Path]) -> None:
    """<SITE> in a description is text, not an HTML tag the UI would swallow."""
    defs = build_definitions(load_config(_config(write_config, ["site-a"])))
    node = defs.resolve_asset_graph().get(dg.AssetKey(["core", "subjects"]))
    schema = node.metadata["dagster/column_schema"]
    usubjid = next(c for c in schema.columns if c.name == "usubjid")
    assert "RESCUE-&lt;SITE&gt;-&lt;NNNN&gt;" in (usubjid.description or "")
    assert "<SITE>" not in (usubjid.description or "")
