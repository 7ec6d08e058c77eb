"""A second process that draws some of the report's plots while this one draws the others
and writes the pages.

matplotlib lays out and writes each figure in Python, on one processor: the plots are most of
the report's time. `rescue run` starts the drawing process when the publish begins (a
processor is free then), so that it has imported matplotlib when the report is written; the
report hands it each site's plots. Without one (a step in a process of its own, as the
daemon's runs are), or when it fails, every plot is drawn here, as the same bytes: plots.py
salts the SVG ids with a constant in whichever process imports it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from rescue_pipeline.raw.workers import start_worker

log = logging.getLogger(__name__)

_POOL: list[ProcessPoolExecutor] = []


def _ready(parent: int) -> None:
    """The drawing process's start: ends with its parent; imports matplotlib and the plots."""
    start_worker(parent)
    import rescue_pipeline.report.plots  # noqa: F401


def start() -> None:
    """Start the drawing process (if none runs): it begins importing matplotlib at once."""
    if _POOL:
        return
    try:
        context = multiprocessing.get_context("spawn")  # a fork beside DuckDB's threads is unsafe
        pool = ProcessPoolExecutor(
            1, mp_context=context, initializer=_ready, initargs=(os.getpid(),)
        )
        pool.submit(os.getpid)  # a pool starts its process at its first task
    except (AssertionError, OSError) as exc:  # a daemon process may not have children
        log.info("the report's plots are drawn in this process: %s", type(exc).__name__)
        return
    _POOL.append(pool)


def stop() -> None:
    """End the drawing process (what it was drawing is not wanted any more)."""
    while _POOL:
        _POOL.pop().shutdown(wait=True, cancel_futures=True)


def running() -> bool:
    return bool(_POOL)


def draw(plot: Callable[[Any, Path], Path], data: Any, path: Path) -> Callable[[], Path]:
    """Draw `plot(data, path)` in the drawing process when one runs, else here; the returned
    call waits for the file and gives its path (drawn here after all if the process failed)."""
    if not _POOL:
        done = plot(data, path)
        return lambda: done
    try:
        future: Future[Path] = _POOL[0].submit(plot, data, path)
    except RuntimeError as exc:  # the process broke on an earlier plot
        return partial(_here, plot, data, path, exc)

    def result() -> Path:
        try:
            return future.result()
        except Exception as exc:  # whatever it was, the plot is drawn here
            return _here(plot, data, path, exc)

    return result


def _here(plot: Callable[[Any, Path], Path], data: Any, path: Path, exc: Exception) -> Path:
    log.warning(
        "the drawing process did not draw %s (%s): it is drawn in this process",
        path.name, type(exc).__name__,
    )  # fmt: skip
    return plot(data, path)
