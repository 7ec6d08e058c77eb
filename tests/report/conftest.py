"""A published warehouse from a synthetic cohort with two loads, and its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rescue_pipeline.analysis.build import derive_analysis
from rescue_pipeline.config import Config
from rescue_pipeline.core.build import build_core
from rescue_pipeline.quality.gate import run_quality
from rescue_pipeline.report.render import ReportFiles, write_report
from rescue_pipeline.site_load import load_site, publish_warehouse, work_db
from tests.cohort import KEY, TODAY, build_cohort


@pytest.fixture(scope="session")
def reported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Config, dict[str, Any], ReportFiles]:
    """Cohort loaded twice (the second drop adds a bad line at site-a), checked, published,
    reported."""
    root = tmp_path_factory.mktemp("report")
    config, truth = build_cohort(root / "cohort", patients=120, seed=23, fault_rate=0.05)
    with work_db(config) as con:
        publish_warehouse(config, run_quality(con, config, today=TODAY))
    site_a = config.site("site-a")
    observations = site_a.source.path / "Observation.ndjson"  # type: ignore[union-attr]
    with observations.open("ab") as handle:
        handle.write(b'{"resourceType": "Observation", "id": "late-1", "status": "final"\n')
    load_site(config, site_a)
    with work_db(config) as con:
        build_core(con, config, key=KEY, today=TODAY)
        derive_analysis(con, config, today=TODAY)
        publish_warehouse(config, run_quality(con, config, today=TODAY))
    files = write_report(
        config.warehouse, root / "report", study_id=config.study_id,
        site_ids=[s.id for s in config.sites],
    )  # fmt: skip
    return config, truth, files


def patients(config: Config) -> list[dict[str, Any]]:
    """Every Patient resource the sites sent (the PHI the report must not carry)."""
    out = []
    for site in config.sites:
        path = site.source.path / "Patient.ndjson"  # type: ignore[union-attr]
        for line in path.read_bytes().splitlines():
            try:
                resource = json.loads(line)
            except ValueError:
                continue
            if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
                out.append(resource)
    return out


def sponsor_text(files: ReportFiles) -> dict[Path, str]:
    return {p: p.read_text("utf-8") for p in sorted(files.sponsors.rglob("*")) if p.is_file()}
