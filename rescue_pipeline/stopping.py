"""A stop request (SIGTERM from a scheduler, SIGINT from a terminal): the exception it becomes,
and a record that it came.

No imports of ours: the signal handler uses this at any point, even while a module of ours is
half imported. The record is needed because an exception raised inside a DuckDB query comes
back as DuckDB's own "Query interrupted" error, and Dagster raises its own inside a step, with
its own handler in place of ours: Python's wakeup file descriptor still receives the number of
every signal, whoever handles it, so that is where a stop's signal is read when ours did not
run."""

from __future__ import annotations

import os
import signal

_received: list[int] = []
_wakeup: list[int] = []  # the read end of the wakeup pipe, once watched


class StopRequested(KeyboardInterrupt):
    """A signal asked the run to stop: the step in progress rolled back, nothing after it ran.

    `published` says whether the publish had completed before the stop, `report_written`
    whether the sponsors' report of it had too."""

    def __init__(
        self, message: str, *, published: bool = False, report_written: bool = False
    ) -> None:
        super().__init__(message)
        self.published = published
        self.report_written = report_written

    @property
    def signum(self) -> int | None:
        _drain()
        return _received[-1] if _received else None


def request_stop(signum: int) -> StopRequested:
    """Record that a stop was asked for; the exception to raise where the signal landed."""
    _received.append(signum)
    return StopRequested(f"stopped by signal {signal.Signals(signum).name}")


def stop_requested() -> bool:
    """Whether this process was sent a stop signal (seen by our handler or the wakeup pipe)."""
    _drain()
    return bool(_received)


def watch_signals() -> None:
    """Note every signal's number in a pipe (main thread only, once): Dagster's handlers, which
    replace ours during a run, then cannot hide which signal stopped it."""
    if _wakeup:
        return
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    _wakeup.append(read)


def _drain() -> None:
    if not _wakeup:
        return
    try:
        data = os.read(_wakeup[0], 512)
    except BlockingIOError:
        return
    _received.extend(n for n in data if n in (signal.SIGTERM, signal.SIGINT))


def forget_stops() -> None:
    """Start a command with no stop on record (a test may run several in one process)."""
    _drain()
    _received.clear()


def stop_signal() -> str:
    """The stop's signal in words, for messages: "signal SIGTERM", or "a signal"."""
    _drain()
    return f"signal {signal.Signals(_received[-1]).name}" if _received else "a signal"
