"""The worker processes the raw layer hands CPU work to: classifying spans while the landing
inserts, validating versions against the FHIR models.

Kept for the life of this process (starting one costs ~0.5 s); started with `spawn`, since a
fork beside DuckDB's threads is unsafe; each ends by itself when its parent is gone.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from rescue_pipeline.interpreter import collect_less

WORKERS_MAX = 4

_POOLS: dict[int, ProcessPoolExecutor] = {}


def watch_parent(parent: int) -> None:
    """Worker initializer: end this worker when its parent is gone (a SIGKILL gives the pool no
    chance to stop it), checked every half second."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="rescue-parent-watch", daemon=True).start()


def start_worker(parent: int) -> None:
    """Worker initializer: ends with its parent (watch_parent); collects garbage as the
    command does (interpreter.collect_less), which also makes its exit quick."""
    watch_parent(parent)
    collect_less()


def available() -> int:
    """How many workers this machine can keep busy: its processors, at most WORKERS_MAX."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, WORKERS_MAX))


def pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes, started on first use and kept (a pool one of whose
    processes died is replaced: it would refuse every task)."""
    found = _POOLS.get(workers)
    if found is not None and getattr(found, "_broken", False):
        del _POOLS[workers]
        found.shutdown(wait=False, cancel_futures=True)
        found = None
    if found is None:
        context = multiprocessing.get_context("spawn")
        found = _POOLS[workers] = ProcessPoolExecutor(
            workers, mp_context=context, initializer=start_worker, initargs=(os.getpid(),)
        )
        if len(_POOLS) == 1:
            atexit.register(shutdown_pools)
    return found


def start(workers: int) -> ProcessPoolExecutor:
    """The pool of `workers`, its processes starting now (in the background) rather than at
    its first tasks: the caller's own work meanwhile hides their ~0.5 s start."""
    found = pool(workers)
    for _ in range(workers):  # a pool starts a process per task until it has them all
        found.submit(os.getpid)
    return found


def shutdown_pools() -> None:
    """Stop every pool (after a failure a worker may have died: the next use starts afresh)."""
    while _POOLS:
        _POOLS.popitem()[1].shutdown(cancel_futures=True)
