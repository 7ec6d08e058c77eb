"""The package as a user installs it (a wheel, not the editable checkout) runs the demo with
its quality gate: everything it reads at run time (suites, SQL, views, terminology, templates)
ships inside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SCRIPT = """
import sys
sys.path.insert(0, {site!r})
import rescue_pipeline
assert rescue_pipeline.__file__.startswith({site!r}), rescue_pipeline.__file__
from rescue_pipeline.cli import main
sys.exit(main(["demo", "--out", {out!r}, "--patients", "60"]))
"""


def test_the_wheel_installed_without_the_checkout_runs_the_demo_with_its_gate(
    tmp_path: Path,
) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    built = subprocess.run(
        [*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("rescue_pipeline-*.whl")
    site = tmp_path / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert (site / "rescue_pipeline" / "quality" / "suites" / "core.subjects.json").exists()
    out = tmp_path / "demo"
    work = tmp_path / "elsewhere"  # not the repository: nothing of the checkout is at hand
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(site=str(site), out=str(out))],
        cwd=work, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Quality: " in done.stdout and "0 critical failures" in done.stdout
    assert "Published: site-a, site-b, site-c" in done.stdout
    assert (out / "warehouse" / "rescue.duckdb").exists()
