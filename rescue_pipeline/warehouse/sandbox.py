"""Analysts' SQL runs in a sandbox: a read-only DuckDB connection that cannot touch anything else.

`rescue query` takes SQL from a person, and `rescue export` / `rescue km` open the published file
on their behalf: neither may write a file, read one (no `read_csv('/etc/passwd')`, no `COPY ...
TO`, no `ATTACH` of the working database, no `EXPORT DATABASE`), reach the network, install or
load an extension, or change a setting. DuckDB enforces it: external access off, extensions
neither installed nor loaded, and the configuration locked. On top of that only statements that
read are accepted (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, PIVOT, EXPLAIN), and a query
is interrupted after a deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

ConfigValue = str | bool | int | float | list[str]
SANDBOX_CONFIG: dict[str, ConfigValue] = {
    "enable_external_access": False,  # no file or network access beyond the database file
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "lock_configuration": True,  # last: nothing above can be switched back by a query
}
READING = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


class QueryRefused(ValueError):
    """The SQL contains a statement that does more than read."""


def connect(path: Path, *, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """`path` opened read-only inside the sandbox (raises duckdb.IOException when locked)."""
    config: dict[str, ConfigValue] = {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    config.update(SANDBOX_CONFIG)
    return duckdb.connect(str(path), read_only=True, config=config)


def reading_statements(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """The statements of `sql`, each checked to only read; QueryRefused names the first that
    does not (by its kind, never by its text)."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"not valid SQL: {str(exc).splitlines()[0]}") from None
    if not statements:
        raise QueryRefused("no statement given")
    for n, statement in enumerate(statements, 1):
        if statement.type not in READING:
            kind = str(statement.type).rsplit(".", 1)[-1]
            raise QueryRefused(
                f"statement {n} is {kind}: only SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE and "
                "EXPLAIN are accepted (the warehouse is read-only)"
            )
    return [s.query for s in statements]


@contextmanager
def deadline(con: duckdb.DuckDBPyConnection, seconds: float | None) -> Iterator[None]:
    """Interrupt whatever `con` runs once `seconds` have passed (None: no deadline)."""
    if not seconds:
        yield
        return
    timer = threading.Timer(seconds, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
