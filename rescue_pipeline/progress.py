"""Progress for people at a terminal, plain stage lines for logs: the CLI's concern only.

Layers report progress through callbacks (`advance(n)`); this module turns them into a bar
redrawn in place on a terminal, or into one line per stage when output is a file or a pipe.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Stage:
    """One named stage: `with Stage("landing site-a", total=lines) as s: s.advance(n)`."""

    def __init__(self, name: str, total: int | None = None, *, stream: TextIO | None = None):
        self.name = name
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()
        self._drawn = 0.0
        self.note = ""

    def __enter__(self) -> Stage:
        if self.tty:
            self._draw()
        return self

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.tty and now - self._drawn > 0.1:
            self._draw()

    def _draw(self) -> None:
        self._drawn = time.perf_counter()
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 30)
            text = f"  {self.name:<34} [{bar:<30}] {share:4.0%}"
        else:
            text = f"  {self.name:<34} {self.done:,}"
        self.stream.write("\r" + text[:110])
        self.stream.flush()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        seconds = time.perf_counter() - self.started
        status = "failed" if exc_type else "done"
        note = f" {self.note}" if self.note else ""
        line = f"  {self.name:<34} {status} in {seconds:5.1f}s{note}"
        if self.tty:
            self.stream.write("\r" + " " * 110 + "\r")
        self.stream.write(line + "\n")
        self.stream.flush()
