"""What this machine lets the pipeline use: memory (a container's limit where there is one).

DuckDB sizes its own default from the machine's physical memory, which in a container can be
far more than the container may use; a limit taken from the container's cgroup keeps a large
build spilling to disk instead of being killed.
"""

from __future__ import annotations

import os
from pathlib import Path

_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_memory_limit(paths: tuple[Path, ...] = _CGROUP_LIMITS) -> int | None:
    """This process's container memory limit in bytes; None when there is none ("max", or v1's
    page-rounded 2**63)."""
    for path in paths:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def usable_memory() -> int | None:
    """The memory this process may use: the smaller of the machine's and its container's."""
    known = [m for m in (physical_memory(), cgroup_memory_limit()) if m]
    return min(known) if known else None
