"""Run an SQL script one statement at a time, so a failure names the statement that failed
(`INSERT core.diagnoses`, `CREATE core_stage.codings`) and each statement can be timed and its
plan read on its own."""

from __future__ import annotations

import re

import duckdb

_COMMENT = re.compile(r"--[^\n]*")
_TARGET = re.compile(
    r"^\s*(CREATE|INSERT|DROP|UPDATE|DELETE|ALTER|SELECT|WITH|SET|COPY)\b"
    r"(?:\s+OR\s+REPLACE)?(?:\s+TEMP(?:ORARY)?)?"
    r"(?:\s+(?:TABLE|VIEW|MACRO|SCHEMA|INTO|FROM|VARIABLE))?"
    r"(?:\s+IF\s+(?:NOT\s+)?EXISTS)?\s*([A-Za-z_][\w.]*)?",
    re.IGNORECASE,
)


def statement_label(sql: str) -> str:
    """What a statement does and to which table, from its text: `INSERT core.surgeries`."""
    text = _COMMENT.sub("", sql)
    match = _TARGET.match(text)
    if match is None:
        return " ".join(text.split())[:40]
    verb, target = match.group(1).upper(), match.group(2)
    if verb in ("SELECT", "WITH") or not target:
        return verb
    return f"{verb} {target}"


def run_script(con: duckdb.DuckDBPyConnection, script: str) -> None:
    """Execute each statement of `script` in turn. A DuckDB error is raised again as a
    ScriptError that names the statement; DuckDB's exception stays as its cause."""
    for statement in con.extract_statements(script):
        try:
            con.execute(statement)
        except duckdb.Error as exc:
            raise ScriptError(statement_label(statement.query), exc) from exc


class ScriptError(RuntimeError):
    """A statement of a script failed: `label` says which, `error` is DuckDB's own."""

    def __init__(self, label: str, error: duckdb.Error) -> None:
        super().__init__(f"{label}: {error}")
        self.label = label
        self.error = error


def duckdb_first_line(exc: BaseException) -> str:
    """DuckDB's first line of an error, its quoted literals left out: they can be values of a
    resource (a conversion error quotes the string it could not convert), identifiers stay."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    return re.sub(r"'[^']*'", "'…'", first)
