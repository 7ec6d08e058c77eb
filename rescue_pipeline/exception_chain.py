"""An exception and what caused it, in order: the lower layers wrap their errors with
`raise ... from None`, and Python still keeps the original as `__context__`."""

from __future__ import annotations

from collections.abc import Iterator


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what caused it (explicitly or while it was being handled)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
