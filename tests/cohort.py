"""A synthetic cohort taken through the real pipeline steps, for the tests that need one."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from rescue_pipeline.analysis.build import derive_analysis
from rescue_pipeline.config import Config, load_config
from rescue_pipeline.core.build import build_core
from rescue_pipeline.site_load import load_site, work_db
from rescue_pipeline.synth import generate

KEY = b"cohort-test-key-0123456789"
TODAY = dt.date(2026, 6, 30)


def build_cohort(
    out: Path,
    *,
    patients: int,
    seed: int,
    sites: int = 3,
    fault_rate: float | None = None,
    analysis: bool = True,
) -> tuple[Config, dict[str, Any]]:
    """Generate, land every site, build core (and analysis); return the config and the truth."""
    options = {} if fault_rate is None else {"fault_rate": fault_rate}
    generate(out, patients=patients, sites=sites, seed=seed, **options)
    config = load_config(out / "sites.yaml")
    for site in config.sites:
        load_site(config, site)
    with work_db(config) as con:
        build_core(con, config, key=KEY, today=TODAY)
        if analysis:
            derive_analysis(con, config, today=TODAY)
    return config, json.loads((out / "ground_truth.json").read_text())
