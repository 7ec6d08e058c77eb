"""Shared synthetic cohorts: generated once per test session into temporary folders."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from rescue_pipeline.synth import SynthSummary, generate


@dataclass(frozen=True)
class Cohort:
    """A generated cohort with its ground truth loaded and the fault lines indexed."""

    path: Path
    summary: SynthSummary
    truth: dict[str, Any]
    wall_seconds: float

    def fault_lines(self, site_id: str, file: str) -> dict[int, dict[str, Any]]:
        return {
            f["line"]: f
            for f in self.truth["faults"]
            if f["site_id"] == site_id and f["file"] == file
        }


def make_cohort(out: Path, **kwargs: Any) -> Cohort:
    started = time.perf_counter()
    summary = generate(out, **kwargs)
    wall = time.perf_counter() - started
    truth = orjson.loads((out / "ground_truth.json").read_bytes())
    return Cohort(out, summary, truth, wall)


@pytest.fixture(scope="session")
def cohort_1000(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """1,000 patients over 3 sites at the default fault rate (the realism cohort)."""
    return make_cohort(tmp_path_factory.mktemp("synth1000"), patients=1000, sites=3, seed=11)


@pytest.fixture(scope="session")
def cohort_demo(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """The demo's shape: 250 patients over 3 sites."""
    return make_cohort(tmp_path_factory.mktemp("synth250"), patients=250, sites=3, seed=2026)
