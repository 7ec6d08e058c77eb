"""The quality worker: one process that imports Great Expectations while the analysis is being
derived, then runs the suites over their frames as the quality step computes them.

Importing GE takes about 3 s of one processor, paid once per process: in a worker started
when the analysis begins (by `rescue run`, whose steps share one process) it overlaps the
derivation, and while the worker checks one suite the step queries the next. The worker is a
daemon (it ends with its parent, and with a parent killed outright too). If it cannot start, or
dies, the checks run in this process as they did before: slower, the same frames, the same
results. An error inside the worker comes back as one line, never as a hang.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from rescue_pipeline.interpreter import imports_done, return_free_memory
from rescue_pipeline.quality.suites.model import CheckResult, Stamp, Suite
from rescue_pipeline.quality.suites.validate import validate_frame, warm
from rescue_pipeline.raw.workers import start_worker

if TYPE_CHECKING:  # pandas takes 0.4 s to import; here it only names a type
    import pandas as pd

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5


class QualityWorkerError(RuntimeError):
    """Checking a suite raised in the worker: the suite and the error's first line."""


@dataclass(frozen=True)
class _Request:
    number: int
    suite: Suite
    data: pd.DataFrame
    sites: tuple[str, ...]
    stamp: Stamp


def _serve(requests: Any, replies: Any, parent: int) -> None:
    """The worker's loop: import GE, then check each request in turn until told to stop.
    Replies are pickled here, so one that cannot be sent is reported instead of lost (the
    queue's own thread would only print it)."""
    start_worker(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # stop() ends it with SIGTERM: exit as Python does, so that the semaphores a library made
    # here are released (killed outright, the resource tracker would warn of them)
    signal.signal(signal.SIGTERM, _exit)
    logging.getLogger().addHandler(logging.NullHandler())  # GE's log lines are not ours to print
    warm()
    imports_done()
    while (message := requests.get()) is not None:
        replies.put(_answer(message))
        del message
        return_free_memory()  # the frame's memory, for the run's next queries


def _answer(message: bytes) -> tuple[int, bytes]:
    """A request's number and its reply, pickled: the results, or the error's one line. The
    frame and the results are gone when this returns."""
    request: _Request = pickle.loads(message)  # noqa: S301 (our own parent's bytes)
    try:
        checked = validate_frame(request.suite, request.data, request.sites, request.stamp)
        return request.number, pickle.dumps(checked)
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0][:300]
        return request.number, pickle.dumps(
            f"suite {request.suite.name}: {type(exc).__name__}: {first}"
        )


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


class _Worker:
    """The worker process and its two queues; requests are numbered, replies matched to them."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # a fork beside DuckDB's threads is unsafe
        self.requests = context.Queue()
        self.replies = context.Queue()
        self.requests.cancel_join_thread()  # never wait at exit for a worker that is gone
        self.process: BaseProcess = context.Process(
            target=_serve,
            args=(self.requests, self.replies, os.getpid()),
            name="rescue-quality",
            daemon=True,
        )
        self.process.start()
        self.numbers = itertools.count()
        self.arrived: dict[int, bytes] = {}

    def alive(self) -> bool:
        return self.process.is_alive()

    def reply(self, number: int) -> list[CheckResult]:
        """The results of request `number`; raises _Gone when the worker died first."""
        while number not in self.arrived:
            try:
                got, reply = self.replies.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not self.alive():
                    raise _Gone from None
                continue
            self.arrived[got] = reply
        answer = pickle.loads(self.arrived.pop(number))  # noqa: S301 (our own worker's bytes)
        if isinstance(answer, str):
            raise QualityWorkerError(answer)
        checked: list[CheckResult] = answer
        return checked

    def stop(self) -> None:
        """End the process now: what it was still checking is not wanted any more. The
        queues are closed too: their feeder thread would otherwise keep a semaphore to the end
        of this process, and Python would warn of it on the way out."""
        self.process.terminate()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        for channel in (self.requests, self.replies):
            channel.close()


class _Gone(Exception):
    """The worker process ended before it replied."""


_WORKER: list[_Worker] = []
_REFUSED: list[str] = []  # this process may not start one (a daemon's child): not tried again


def start() -> None:
    """Start the worker if none is running: it begins importing GE at once."""
    if (_WORKER and _WORKER[0].alive()) or _REFUSED:
        return
    _WORKER.clear()
    try:
        _WORKER.append(_Worker())
    except (AssertionError, OSError) as exc:  # a daemon process may not have children
        _REFUSED.append(type(exc).__name__)
        log.info("the quality checks run in this process: %s", type(exc).__name__)


def stop() -> None:
    """End the worker (the next quality step starts another)."""
    while _WORKER:
        _WORKER.pop().stop()


def submit(
    suite: Suite,
    data: pd.DataFrame,
    sites: Sequence[str],
    stamp: Stamp,
    again: Callable[[], pd.DataFrame],
) -> Callable[[], list[CheckResult]]:
    """Hand a suite's frame to the worker; the returned call waits for its results. Once sent,
    the frame is not kept here (at 100,000 patients one is hundreds of MB): if the worker dies
    before it answers, `again` computes the frame anew and it is checked in this process."""
    start()
    worker = _WORKER[0] if _WORKER else None
    if worker is None:
        return partial(validate_frame, suite, data, sites, stamp)
    number = next(worker.numbers)
    request = _Request(number, suite, data, tuple(sites), stamp)
    try:  # pickled here: the queue's own thread would only print a failure, and wait forever
        message = pickle.dumps(request)
    except Exception:
        return partial(validate_frame, suite, data, sites, stamp)
    worker.requests.put(message)

    def results() -> list[CheckResult]:
        try:
            return worker.reply(number)
        except _Gone:
            log.warning("the quality worker ended; the checks go on in this process")
            if _WORKER and _WORKER[0] is worker:
                _WORKER.clear()
            return validate_frame(suite, again(), sites, stamp)

    return results
