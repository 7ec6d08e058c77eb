"""How CPython's cyclic garbage collector (and the C allocator under it) runs in the
pipeline's processes.

Importing Dagster, DuckDB, pyarrow (and, in the quality worker, Great Expectations) leaves
hundreds of thousands of long-lived objects that are never garbage. With CPython's default
thresholds the collector walks them again and again as a run allocates (about 1.2 s of a
5,000-patient run's main process), and once more, all of them, when the process exits (0.5-1 s
per process: the command's, each landing and validation worker's, the quality worker's).

Reference counting frees almost everything as before; the collector runs less often, and
objects that live as long as the process are left out of its passes. The price: an object
that is only reachable from a reference cycle when the process exits, and is older than the
young generations, is not finalized (its __del__ does not run). The pipeline never relies on a
finalizer: its DuckDB connections and files are closed by `with` blocks.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import gc
import os
import sys
from collections.abc import Callable

# A young-generation pass every YOUNG container allocations (CPython: 700), an older pass every
# OLDER young ones (CPython: 10 and 10). Counted in objects, not bytes: a frame in a cycle waits
# longer to be freed. Measured: no stage's peak memory rose, at 1,000 to 100,000 patients.
YOUNG = 50_000
OLDER = 20

_REGISTERED: list[bool] = []


def collect_less() -> None:
    """For a process of ours that runs long enough to matter (the command, a worker): collect
    cyclic garbage less often, and at exit collect only the young generations before freezing
    the rest (which skips the collector's last pass over every object).

    Python 3.14's incremental collector reads the thresholds differently: there they stay."""
    if sys.version_info < (3, 14):
        gc.set_threshold(YOUNG, OLDER, OLDER)
    if not _REGISTERED:
        atexit.register(_leave)
        _REGISTERED.append(True)


def _leave() -> None:
    gc.collect(1)  # the cycles made lately (an error's traceback, say) are still finalized
    gc.freeze()


def imports_done() -> None:
    """After a process's large imports, in a process that called collect_less: what they made
    lives as long as the process, so later passes need not walk it. A caller that runs the
    command in a process of its own (a test, a notebook) keeps its collector as it was."""
    if _REGISTERED:
        gc.freeze()


def return_free_memory() -> None:
    """Give memory freed since the last call back to the system. glibc keeps what a large
    frame used in its arenas for reuse, so a worker's resident size would otherwise stay at its
    largest request's while the next stage needs the memory. No-op without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], object] | None:
    if not glibc():
        return None
    try:
        trim: Callable[[int], object] = ctypes.CDLL("libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):
        return None


def glibc() -> bool:
    """Whether this process runs on the GNU C library (not musl, macOS or Windows)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError, AttributeError):
        return False
