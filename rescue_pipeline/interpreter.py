"""How CPython's cyclic garbage collector (and the C allocator under it) runs in the
pipeline's processes.

Importing Dagster, DuckDB, pyarrow (and, in the quality worker, Great Expectations) leaves
hundreds of thousands of long-lived objects that are never garbage. With CPython's default
thresholds the collector walks them again and again as a run allocates (about 1.2 s of a
5,000-patient run's main process), and once more, all of them, when the process exits (0.5-1 s
per process: the command's, each landing and validation worker's, the quality worker's).

Nothing here changes what is freed: reference counting frees almost everything as before; the
collector only runs less often, and objects that live as long as the process are left out of its
passes.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import sys

# A young-generation pass every YOUNG container allocations (CPython: 700), an older pass every
# OLDER young ones (CPython: 10 and 10). Cyclic garbage waits a little longer: a few MB at most.
YOUNG = 50_000
OLDER = 20

_REGISTERED: list[bool] = []


def collect_less() -> None:
    """For a process of ours that runs long enough to matter (the command, a worker): collect
    cyclic garbage less often, and skip the collector's last pass over every object at exit
    (freezing them first leaves them out of it; the process is ending, nothing is lost)."""
    gc.set_threshold(YOUNG, OLDER, OLDER)
    if not _REGISTERED:
        atexit.register(gc.freeze)
        _REGISTERED.append(True)


def imports_done() -> None:
    """After a process's large imports: what they made lives as long as the process, so later
    passes need not walk it."""
    gc.freeze()


def return_free_memory() -> None:
    """Give memory freed since the last call back to the system. glibc keeps what a large
    frame used in its arenas for reuse, so a worker's resident size would otherwise stay at its
    largest request's while the next stage needs the memory. No-op off glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # musl and others: nothing to trim with
        return
