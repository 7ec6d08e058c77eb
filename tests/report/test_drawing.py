"""The report's plots drawn in a second process: the very same files as drawn in one, and
drawn all the same when that process fails."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from rescue_pipeline.report import drawing
from rescue_pipeline.report.render import write_report


@pytest.fixture(autouse=True)
def no_drawer_left() -> Iterator[None]:
    yield
    drawing.stop()


def _write(reported, out: Path) -> dict[str, bytes]:
    config = reported[0]
    files = write_report(
        config.warehouse, out, study_id=config.study_id, site_ids=[s.id for s in config.sites]
    )
    return {str(p.relative_to(out)): p.read_bytes() for p in files.pages} | {
        str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.svg"))
    }


def test_plots_drawn_in_the_drawing_process_are_the_same_bytes(reported, tmp_path) -> None:
    alone = _write(reported, tmp_path / "alone")
    drawing.start()
    assert drawing.running()
    beside = _write(reported, tmp_path / "beside")
    assert beside == alone
    assert sum(name.endswith(".svg") for name in alone) == 4 + 3 * len(reported[0].sites)


def test_a_drawing_process_that_dies_leaves_no_plot_undrawn(reported, tmp_path) -> None:
    alone = _write(reported, tmp_path / "alone")
    drawing.start()
    pid = drawing._POOL[0].submit(os.getpid).result()
    os.kill(pid, signal.SIGKILL)
    assert _write(reported, tmp_path / "after") == alone
