"""The report's plots drawn in a second process: the very same files as drawn in one, and
drawn all the same when that process fails."""

from __future__ import annotations

import logging
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from rescue_pipeline.report import drawing
from rescue_pipeline.report.render import write_report

WRITTEN = re.compile(rb"report written [0-9: -]+ UTC")


@pytest.fixture(autouse=True)
def no_drawer_left() -> Iterator[None]:
    yield
    drawing.stop()


def _write(reported, out: Path) -> dict[str, bytes]:
    config = reported[0]
    files = write_report(
        config.warehouse, out, study_id=config.study_id, site_ids=[s.id for s in config.sites]
    )
    # the pages say when they were written (to the minute): that alone may differ
    return {str(p.relative_to(out)): WRITTEN.sub(b"", p.read_bytes()) for p in files.pages} | {
        str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.svg"))
    }


def test_plots_drawn_in_the_drawing_process_are_the_same_bytes(
    reported, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    alone = _write(reported, tmp_path / "alone")
    drawing.start()
    assert drawing.running()
    with caplog.at_level(logging.WARNING, logger=drawing.__name__):
        beside = _write(reported, tmp_path / "beside")
    assert caplog.records == []  # every site's plot was drawn there, none again here
    assert beside == alone
    assert sum(name.endswith(".svg") for name in alone) == 4 + 3 * len(reported[0].sites)


def test_a_drawing_process_that_dies_leaves_no_plot_undrawn(
    reported, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    alone = _write(reported, tmp_path / "alone")
    drawing.start()
    pid = drawing._POOL[0].submit(os.getpid).result()
    os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger=drawing.__name__):
        after = _write(reported, tmp_path / "after")
    assert after == alone
    assert len(caplog.records) == 3 * len(reported[0].sites)  # each drawn here instead
