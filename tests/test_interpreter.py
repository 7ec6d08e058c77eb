"""The pipeline's processes collect cyclic garbage less often than CPython's default and skip
the collector's last pass at exit; code that calls the command in its own process keeps its
own collector settings."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from rescue_pipeline import interpreter
from rescue_pipeline.cli import main
from rescue_pipeline.raw.workers import pool, shutdown_pools

TUNED = (interpreter.YOUNG, interpreter.OLDER, interpreter.OLDER)

# Registered before the command runs, so it runs after the command's own exit handler (atexit
# runs the last registered first): it sees what the process exits with.
_COMMAND = """
import atexit, gc, sys
atexit.register(lambda: print("at exit", gc.get_threshold(), gc.get_freeze_count() > 0))
sys.argv = ["rescue", "--help"]
from rescue_pipeline.cli import main
try:
    main()
except SystemExit:
    pass
"""


@pytest.mark.integration
def test_the_command_collects_less_and_freezes_its_objects_at_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND], capture_output=True, text=True, check=True, timeout=120
    )
    assert f"at exit {TUNED} True" in done.stdout


def test_a_caller_in_its_own_process_keeps_its_collector_settings() -> None:
    before = gc.get_threshold()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert gc.get_threshold() == before != TUNED
    frozen = gc.get_freeze_count()
    interpreter.imports_done()  # as `rescue run` called in this process does
    assert gc.get_freeze_count() == frozen


@pytest.mark.integration
def test_worker_processes_collect_as_the_command_does() -> None:
    try:
        assert pool(1).submit(gc.get_threshold).result(timeout=120) == TUNED
    finally:
        shutdown_pools()


# 3,000 blocks of 64 KiB (under glibc's mmap threshold: they come from the heap), all freed but
# the last, which pins the heap's top, so glibc cannot give the rest back by itself.
_HEAP = """
import os
from rescue_pipeline.interpreter import return_free_memory

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20

blocks = [bytearray(64 * 1024) for _ in range(3000)]
pin = blocks[-1]
del blocks
before = rss()
return_free_memory()
print(before, rss())
"""


@pytest.mark.integration
@pytest.mark.skipif(not interpreter.glibc(), reason="glibc's heap")
def test_freed_memory_goes_back_to_the_system() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _HEAP], capture_output=True, text=True, check=True, timeout=120
    )
    before, after = (int(n) for n in done.stdout.split())
    assert before - after > 100, (before, after)  # of ~190 MB freed
