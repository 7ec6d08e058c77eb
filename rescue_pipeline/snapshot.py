"""Data cut-off snapshots: the published warehouse and its exports frozen for an analysis.

`rescue snapshot --cutoff DATE` copies the published warehouse (it is only ever replaced by a
rename, so the copy is one whole publish), writes the Parquet exports and define.json from
that copy, and a manifest: the configuration, the rule settings the data were derived with,
the code version, row counts and the sha256 of every file. Files are made read-only and
nothing writes to `snapshots/` afterwards: a later load changes the published warehouse, never
a snapshot. The cut-off must be the one the published data were derived with, so a snapshot
never claims a cut-off its data do not have.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb

from rescue_pipeline.analysis.exports import export
from rescue_pipeline.config import Config

MANIFEST = "manifest.json"


class SnapshotError(RuntimeError):
    """The snapshot cannot be taken as asked (exit code 2: usage)."""


@dataclass
class Snapshot:
    path: Path
    cutoff: str
    created_at: str
    files: dict[str, str]  # relative path → sha256


def snapshots_dir(config: Config) -> Path:
    return config.warehouse.parent / "snapshots"


def take_snapshot(config: Config, cutoff: dt.date) -> Snapshot:
    if not config.warehouse.exists():
        raise SnapshotError(f"no published warehouse at {config.warehouse}: run `rescue run` first")
    created = dt.datetime.now(dt.UTC)
    name = f"{config.study_id}-cutoff-{cutoff.isoformat()}-{created:%Y%m%dT%H%M%SZ}"
    final = snapshots_dir(config) / name
    tmp = final.with_name(f".{name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        warehouse = tmp / config.warehouse.name
        shutil.copyfile(config.warehouse, warehouse)  # one whole publish: renamed, never edited
        with duckdb.connect(str(warehouse), read_only=True) as con:
            settings = _settings(con)
            used = settings.get("data_cutoff")
            if used != cutoff.isoformat():
                raise SnapshotError(
                    f"the published data were derived with data cut-off {used}, not "
                    f"{cutoff.isoformat()}: set analysis.data_cutoff: {cutoff.isoformat()} in "
                    f"{config.path} and run `rescue run` first"
                )
            rows = _row_counts(con)
            export(
                con, study_id=config.study_id, nct_id=config.nct_id, fmt="parquet",
                out=tmp / "exports",
            )  # fmt: skip
        files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        created_at = created.isoformat(timespec="seconds")
        manifest = {
            "study_id": config.study_id,
            "data_cutoff": cutoff.isoformat(),
            "created_at": created_at,
            "code_version": _code_version(),
            "configuration": {
                "path": str(config.path),
                "sha256": _sha256(config.path),
                "text": config.path.read_text("utf-8"),  # names env variables, never secrets
            },
            "rule_settings": settings,
            "row_counts": rows,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _freeze(final)
    return Snapshot(final, cutoff.isoformat(), created_at, files)


def list_snapshots(config: Config) -> list[dict[str, Any]]:
    """Every snapshot's manifest (newest last), with whether its files still match it."""
    out = []
    for manifest in sorted(snapshots_dir(config).glob(f"*/{MANIFEST}")):
        doc = json.loads(manifest.read_text("utf-8"))
        doc["path"] = str(manifest.parent)
        doc["intact"] = verify(manifest.parent)
        out.append(doc)
    return sorted(out, key=lambda d: d["created_at"])


def verify(folder: Path) -> bool:
    """True when every file the manifest lists is there with its hash, and nothing was added."""
    doc = json.loads((folder / MANIFEST).read_text("utf-8"))
    present = {
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
    }
    return present == set(doc["files"]) and all(
        _sha256(folder / rel) == digest for rel, digest in doc["files"].items()
    )


def _settings(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    rows = con.execute(
        "SELECT settings FROM analysis.derivation_runs ORDER BY derived_at DESC LIMIT 1"
    ).fetchall()
    if not rows:
        raise SnapshotError("the published warehouse has no analysis derivation yet")
    value = rows[0][0]
    settings: dict[str, Any] = json.loads(value) if isinstance(value, str) else dict(value)
    return settings


def _row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY 1, 2"
    ).fetchall()
    return {
        f"{s}.{t}": int(con.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchall()[0][0])
        for s, t in tables
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _code_version() -> str:
    """The package version, and the git commit when run from a clone."""
    text = version("rescue-pipeline")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 (git from PATH, no input)
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return text
    return f"{text}+g{commit}"


def _freeze(folder: Path) -> None:
    """Read-only files and folders: a snapshot is not edited by accident."""
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(
            stat.S_IRUSR | stat.S_IRGRP | (stat.S_IXUSR | stat.S_IXGRP if path.is_dir() else 0)
        )
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
