"""Export the analysis datasets (ADSL, ADTTE, ADELIG, ADELIGEV, ADELIGSM) as Parquet, CSV or XPT,
with define.xml, define.html and define.json.

Every format gets the same datasets, built once from the analysis schema by define.py's specs
and checked against SAS transport v5's limits before anything is written: names <= 8
characters, labels <= 40, character values <= 200 bytes. An overlong value is an error naming
dataset, variable and row: a value is never cut (the eligibility evidence lists are split one
source id per row into ADELIGEV for that reason). Only the variables the specs declare are
selected, so a column added to an analysis table by hand never leaks into an export.
Each file is written under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rescue_pipeline.analysis import define_html, define_xml
from rescue_pipeline.analysis.counts import latest_derivation
from rescue_pipeline.analysis.define import (
    DIRECT_IDENTIFIERS,
    MAX_LABEL,
    SAS_DATE_FORMAT,
    DatasetSpec,
    criteria_rows,
    dataset_specs,
    define_document,
)

Format = Literal["parquet", "csv", "xpt"]
MAX_NAME = 8
MAX_CHAR_BYTES = 200
SAS_EPOCH = dt.date(1960, 1, 1)
_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,7}\Z")
_EXT = {"parquet": "parquet", "csv": "csv", "xpt": "xpt"}


class ExportError(ValueError):
    """A dataset breaks a limit of the export; the message names dataset, variable and row."""


@dataclass
class ExportResult:
    out: Path
    fmt: Format
    files: dict[str, Path] = field(default_factory=dict)  # dataset name -> file
    rows: dict[str, int] = field(default_factory=dict)
    define: Path | None = None  # define.json
    define_xml: Path | None = None
    define_html: Path | None = None


def export(
    con: duckdb.DuckDBPyConnection,
    *,
    study_id: str,
    fmt: Format,
    out: Path,
    nct_id: str | None = None,
) -> ExportResult:
    """Write every analysis dataset in `fmt` into `out`, with their metadata as define.xml
    (Define-XML 2.1, validated), define.html (the same for a browser) and define.json."""
    if fmt not in _EXT:
        raise ExportError(f"unknown export format {fmt!r}: use parquet, csv or xpt")
    specs = dataset_specs()
    for spec in specs:
        check_metadata(spec)
    tables = {spec.name: build(con, spec, study_id=study_id) for spec in specs}
    specs = tuple(present(spec, tables[spec.name]) for spec in specs)
    tables = {s.name: tables[s.name].select([v.name for v in s.variables]) for s in specs}
    for spec in specs:
        check_values(spec, tables[spec.name])
    _check_study(tables, study_id)
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(out=out, fmt=fmt)
    files: dict[str, dict[str, Any]] = {}
    for spec in specs:
        path = out / f"{spec.name.lower()}.{_EXT[fmt]}"
        with _atomic(path) as tmp:
            _WRITERS[fmt](con, spec, tables[spec.name], tmp)
        result.files[spec.name] = path
        result.rows[spec.name] = tables[spec.name].num_rows
        files[spec.name] = {"file": path.name, "rows": tables[spec.name].num_rows,
                            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}  # fmt: skip
    lengths = {spec.name: value_lengths(tables[spec.name]) for spec in specs}
    document = define_document(specs, study_id=study_id, nct_id=nct_id, fmt=fmt,
                               lengths=lengths, files=files,
                               provenance=latest_derivation(con))  # fmt: skip
    document = json.loads(json.dumps(document, ensure_ascii=False, default=str))  # as written
    result.define_xml = out / "define.xml"
    try:
        with _atomic(result.define_xml) as tmp:
            define_xml.write(document, tmp)  # validated before it replaces anything
    except define_xml.DefineInvalid as exc:  # never delivered: an error of ours to fix
        for stale in ("define.xml", "define.html", "define.json"):  # no old metadata beside
            (out / stale).unlink(missing_ok=True)  # the new datasets
        raise ExportError(str(exc)) from None
    result.define_html = out / "define.html"
    with _atomic(result.define_html) as tmp:
        tmp.write_text(define_html.render(document), encoding="utf-8")
    result.define = out / "define.json"
    with _atomic(result.define) as tmp:
        tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return result


def present(spec: DatasetSpec, table: pa.Table) -> DatasetSpec:
    """The spec without its optional variables that no record has a value for."""
    kept = tuple(v for v in spec.variables
                 if not v.optional or table.column(v.name).null_count < table.num_rows)  # fmt: skip
    return replace(spec, variables=kept)


def check_metadata(spec: DatasetSpec) -> None:
    """Names and labels that SAS transport v5 can hold, and no direct identifier."""
    where = f"dataset {spec.name}"
    if not _NAME.match(spec.name):
        raise ExportError(f"{where}: name must be 1-{MAX_NAME} letters, digits or _")
    _check_label(where, spec.label)
    seen: set[str] = set()
    for v in spec.variables:
        where = f"dataset {spec.name}, variable {v.name}"
        if not _NAME.match(v.name):
            raise ExportError(f"{where}: name must be 1-{MAX_NAME} upper-case letters, digits or _")
        if v.name in seen:
            raise ExportError(f"{where}: declared twice")
        seen.add(v.name)
        if v.name.lower() in DIRECT_IDENTIFIERS:
            raise ExportError(f"{where}: a direct identifier is never exported")
        _check_label(where, v.label)


def _check_label(where: str, label: str) -> None:
    if not label or len(label) > MAX_LABEL or not label.isascii():
        raise ExportError(
            f"{where}: label {label!r} has {len(label)} characters; it must be 1-{MAX_LABEL} "
            "ASCII characters (write a shorter one in define.LABELS)"
        )


def check_values(spec: DatasetSpec, table: pa.Table) -> None:
    """No character value over 200 bytes (UTF-8): report the first one, never cut it."""
    for v in spec.variables:
        if v.kind != "text":
            continue
        column = table.column(v.name)
        too_long = pc.greater(pc.fill_null(pc.binary_length(column), 0), MAX_CHAR_BYTES)
        if not pc.any(too_long).as_py():
            continue
        row = int(pc.index(too_long, True).as_py())
        keys = ", ".join(f"{k}={table.column(k)[row].as_py()}" for k in spec.keys)
        size = len(column[row].as_py().encode())
        raise ExportError(
            f"dataset {spec.name}, variable {v.name}, row {row + 1} ({keys}): value of {size} "
            f"bytes exceeds the {MAX_CHAR_BYTES}-byte limit of SAS transport v5; values are "
            "never cut"
        )


def value_lengths(table: pa.Table) -> dict[str, int]:
    """Define-XML lengths (at least 1): the longest text value in bytes (the SAS length), the
    most digits of an integer (a sign counts), the digits of a date's SAS day number."""
    out = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            longest = pc.max(pc.binary_length(column)).as_py()
        elif pa.types.is_integer(column.type):
            values = [abs(v) for v in column.to_pylist() if v is not None]
            negative = pc.any(pc.less(column, 0)).as_py()
            longest = len(str(max(values))) + bool(negative) if values else 0
        elif pa.types.is_date(column.type):
            days = [(d - SAS_EPOCH).days for d in column.to_pylist() if d is not None]
            longest = max((len(str(d)) for d in days), default=0)
        else:
            continue
        out[name] = max(int(longest or 0), 1)
    return out


def build(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, *, study_id: str) -> pa.Table:
    """The dataset as an Arrow table, columns typed as the spec declares."""
    con.register("export_criteria", pa.table(criteria_rows()))
    try:
        sql = spec.select_sql()
        params = {"study_id": study_id} if "$study_id" in sql else None
        table = con.sql(sql, params=params).to_arrow_table()
    finally:
        con.unregister("export_criteria")
    return table.cast(pa.schema([pa.field(v.name, _ARROW[v.kind]) for v in spec.variables]))


_ARROW = {"text": pa.string(), "integer": pa.int64(), "float": pa.float64(), "date": pa.date32()}


def _check_study(tables: dict[str, pa.Table], study_id: str) -> None:
    for name, table in tables.items():
        found = set(pc.unique(table.column("STUDYID")).to_pylist()) - {study_id}
        if found:
            raise ExportError(f"dataset {name}: STUDYID {sorted(map(str, found))} is not "
                              f"the configured study {study_id!r}")  # fmt: skip


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _labelled(spec: DatasetSpec, table: pa.Table) -> pa.Table:
    """Labels travel with Parquet too, as field metadata."""
    fields = [
        pa.field(v.name, table.schema.field(v.name).type, metadata={"label": v.label})
        for v in spec.variables
    ]
    return table.cast(pa.schema(fields, metadata={"label": spec.label, "name": spec.name}))


def _write_parquet(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, table: pa.Table, path: Path
) -> None:
    pq.write_table(_labelled(spec, table), path)


def _write_csv(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, table: pa.Table, path: Path
) -> None:
    # A private in-memory DuckDB writes the file: the warehouse connection is a sandbox with no
    # file access, and this one holds nothing but the dataset already read.
    with duckdb.connect() as writer:
        writer.register("export_dataset", table)
        target = str(path).replace("'", "''")
        writer.execute(
            f"COPY (SELECT * FROM export_dataset) TO '{target}' "
            "(FORMAT csv, HEADER true, DATEFORMAT '%Y-%m-%d')"
        ).fetchall()


def _write_xpt(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, table: pa.Table, path: Path
) -> None:
    """SAS transport v5: dates as SAS day numbers with DATE9. (robust even for an all-missing
    date column), integers as doubles, missing text as blank."""
    import pandas as pd
    import pyreadstat

    frame = {}
    for v in spec.variables:
        values = table.column(v.name).to_pylist()
        if v.kind == "text":
            frame[v.name] = pd.Series(["" if x is None else x for x in values], dtype=object)
        elif v.kind == "date":
            frame[v.name] = pd.Series(_sas_days(values), dtype="float64")
        else:
            frame[v.name] = pd.Series([float("nan") if x is None else x for x in values],
                                      dtype="float64")  # fmt: skip
    pyreadstat.write_xport(
        pd.DataFrame(frame),
        str(path),
        file_label=spec.label,
        column_labels={v.name: v.label for v in spec.variables},
        table_name=spec.name,
        file_format_version=5,
        variable_format={v.name: SAS_DATE_FORMAT for v in spec.variables if v.kind == "date"},
    )


def _sas_days(values: Sequence[dt.date | None]) -> list[float]:
    return [float("nan") if d is None else float((d - SAS_EPOCH).days) for d in values]


_WRITERS = {"parquet": _write_parquet, "csv": _write_csv, "xpt": _write_xpt}
