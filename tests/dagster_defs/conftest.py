"""A small synthetic cohort whose sites.yaml carries the orchestration settings a test needs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rescue_pipeline.synth import generate

KEY = "orchestration-test-key-0123456789"


def write_cohort(
    out: Path,
    *,
    sites: int = 2,
    patients: int = 8,
    orchestration: dict[str, Any] | None = None,
    site_settings: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Generate a cohort into `out` and return its sites.yaml, patched with the settings given
    (per-site settings by site id; a value of None removes the key)."""
    generate(out, patients=patients, sites=sites, seed=11, fault_rate=0)
    path = out / "sites.yaml"
    data = yaml.safe_load(path.read_text())
    if orchestration is not None:
        data["orchestration"] = orchestration
    for site in data["sites"]:
        for key, value in (site_settings or {}).get(site["id"], {}).items():
            if value is None:
                site.pop(key, None)
            else:
                site[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def add_drop(site_folder: Path, watched: Path, name: str) -> Path:
    """Deliver a copy of a site's export as a new drop (files first, manifest last)."""
    drop = watched / name
    drop.mkdir(parents=True)
    for path in sorted(site_folder.glob("*.ndjson")):
        shutil.copy(path, drop / path.name)
    shutil.copy(site_folder / "manifest.json", drop / "manifest.json")
    return drop


@pytest.fixture
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RESCUE_PSEUDONYM_KEY", KEY)
    return KEY


@pytest.fixture
def cohort(tmp_path: Path) -> Callable[..., Path]:
    def make(**kwargs: Any) -> Path:
        return write_cohort(tmp_path / "cohort", **kwargs)

    return make
