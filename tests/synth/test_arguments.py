"""Argument checking, fault rate 0 and the progress callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rescue_pipeline.synth import generate


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patients": 0, "sites": 1}, "patients"),
        ({"patients": 10, "sites": 0}, "sites"),
        ({"patients": 100, "sites": 27}, "sites"),
        ({"patients": 2, "sites": 3}, "exceed"),
        ({"patients": 10, "sites": 1, "fault_rate": -0.1}, "fault_rate"),
        ({"patients": 10, "sites": 1, "fault_rate": 0.6}, "fault_rate"),
    ],
)
def test_bad_arguments_raise_value_error(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, seed=1, **kwargs)


def test_fault_rate_zero_injects_nothing(tmp_path: Path) -> None:
    summary = generate(tmp_path, patients=80, sites=3, seed=5, fault_rate=0.0)
    assert summary.faults == {}
    text = (tmp_path / "ground_truth.json").read_text()
    assert '"faults": []' in text
    for site in summary.sites:
        for line in (tmp_path / site / "Observation.ndjson").read_bytes().splitlines():
            assert b"entered-in-error" not in line


def test_progress_reports_about_every_percent(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate(tmp_path, patients=300, sites=2, seed=5, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (300, 300)
    assert 90 <= len(calls) <= 101
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_summary_lists_sites_files_and_paths(tmp_path: Path) -> None:
    summary = generate(tmp_path, patients=30, sites=4, seed=5)
    assert summary.sites == ["site-a", "site-b", "site-c", "site-d"]
    assert summary.ground_truth_path == tmp_path / "ground_truth.json"
    assert summary.config_path == tmp_path / "sites.yaml"
    for site, files in summary.files.items():
        for rtype, lines in files.items():
            assert len((tmp_path / site / f"{rtype}.ndjson").read_bytes().splitlines()) == lines
