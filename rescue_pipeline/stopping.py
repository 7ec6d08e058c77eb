"""A stop request (SIGTERM from a scheduler, SIGINT from a terminal): the exception it becomes,
and a record that it came.

No imports of ours: the signal handler uses this at any point, even while a module of ours is
half imported. The record is needed because an exception raised inside a DuckDB query comes
back as DuckDB's own "Query interrupted" error, and Dagster raises its own inside a step."""

from __future__ import annotations

import signal

_received: list[int] = []


class StopRequested(KeyboardInterrupt):
    """A signal asked the run to stop: the step in progress rolled back, nothing after it ran.

    `published` says whether the publish had completed before the stop (the report had not)."""

    def __init__(self, message: str, *, published: bool = False) -> None:
        super().__init__(message)
        self.published = published

    @property
    def signum(self) -> int | None:
        return _received[-1] if _received else None


def request_stop(signum: int) -> StopRequested:
    """Record that a stop was asked for; the exception to raise where the signal landed."""
    _received.append(signum)
    return StopRequested(f"stopped by signal {signal.Signals(signum).name}")


def stop_requested() -> bool:
    """Whether our handler saw a stop signal in this process."""
    return bool(_received)
