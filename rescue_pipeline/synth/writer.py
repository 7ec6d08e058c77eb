"""Streaming output: per-site NDJSON files and manifests, ground_truth.json, sites.yaml.

Nothing here holds more than one patient's lines: NDJSON goes straight to buffered files, and the
ground truth's `faults` and `subjects` arrays are streamed to part files that are stitched after
the (small) `sites` block once the counts are known. Files another process may read are written
to a temporary name and renamed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import IO, Any

import orjson

from rescue_pipeline.synth.flavours import TIMEZONES, Site, concept_map
from rescue_pipeline.synth.ids import STUDY_ID

BUFFER = 1 << 20
DELETED_FILE = "deleted/Bundle.ndjson"


class FileStats:
    """What the landing layer should find in one NDJSON file."""

    def __init__(self) -> None:
        self.lines = 0
        self.quarantined: Counter[str] = Counter()
        self.duplicates = 0
        self.extra_versions = 0  # accepted lines that add a version to an existing resource
        self.deleted = 0  # resources the site deleted afterwards (a `deleted` Bundle entry)

    def expectation(self) -> dict[str, Any]:
        quarantined = sum(self.quarantined.values())
        accepted = self.lines - quarantined
        distinct = accepted - self.duplicates
        return {
            "lines": self.lines,
            "accepted": accepted,
            "quarantined": dict(sorted(self.quarantined.items())),
            "distinct_versions": distinct,
            "current_resources": distinct - self.extra_versions - self.deleted,
        }


class SiteFiles:
    """One site's folder in the FHIR Bulk Data layout."""

    def __init__(self, root: Path, site: Site) -> None:
        self.site = site
        self.dir = root / site.id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.handles: dict[str, IO[bytes]] = {}
        self.stats: dict[str, FileStats] = {}
        self.deletions = 0

    def write(self, resource_type: str, data: bytes) -> int:
        """Append one line to `<resource_type>.ndjson`; return its 1-based line number."""
        handle = self.handles.get(resource_type)
        if handle is None:
            handle = open(self.dir / f"{resource_type}.ndjson", "wb", buffering=BUFFER)
            self.handles[resource_type] = handle
            self.stats[resource_type] = FileStats()
        handle.write(data)
        handle.write(b"\n")
        stats = self.stats[resource_type]
        stats.lines += 1
        return stats.lines

    def write_deletion(self, bundle: bytes) -> None:
        """Append one Bundle of DELETE entries to `deleted/Bundle.ndjson` (Bulk Data layout)."""
        handle = self.handles.get(DELETED_FILE)
        if handle is None:
            (self.dir / "deleted").mkdir(exist_ok=True)
            handle = open(self.dir / DELETED_FILE, "wb", buffering=BUFFER)
            self.handles[DELETED_FILE] = handle
        handle.write(bundle)
        handle.write(b"\n")
        self.deletions += 1

    def close(self, transaction_time: str) -> dict[str, int]:
        """Close the files, write manifest.json; return lines per resource type."""
        for handle in self.handles.values():
            handle.close()
        counts = {rtype: self.stats[rtype].lines for rtype in sorted(self.stats)}
        manifest = {
            "transactionTime": transaction_time,
            "request": f"https://{self.site.id}.example.org/fhir/$export?_outputFormat="
            "application/fhir+ndjson",
            "requiresAccessToken": False,
            "output": [
                {"type": rtype, "url": f"{rtype}.ndjson", "count": n} for rtype, n in counts.items()
            ],
            "error": [],
        }
        if self.deletions:
            manifest["deleted"] = [{"type": "Bundle", "url": DELETED_FILE, "count": self.deletions}]
        atomic_write(
            self.dir / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
        )
        return counts


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class GroundTruthWriter:
    """Streams `faults` and `subjects` to part files; `finish` stitches ground_truth.json."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / "ground_truth.json"
        self.parts = {
            name: out_dir / f".ground_truth.{name}.part" for name in ("faults", "subjects")
        }
        self.files = {name: open(path, "wb", buffering=BUFFER) for name, path in self.parts.items()}
        self.counts = {name: 0 for name in self.parts}

    def add(self, array: str, item: dict[str, Any]) -> None:
        handle = self.files[array]
        handle.write(b",\n  " if self.counts[array] else b"\n  ")
        handle.write(orjson.dumps(item))
        self.counts[array] += 1

    def finish(self, head: dict[str, Any]) -> None:
        """Write the head keys, then the streamed arrays, into ground_truth.json atomically."""
        for handle in self.files.values():
            handle.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "wb", buffering=BUFFER) as out:
            out.write(b"{")
            for i, (key, value) in enumerate(head.items()):
                out.write(b",\n " if i else b"\n ")
                out.write(orjson.dumps(key) + b": " + orjson.dumps(value))
            for name, part in self.parts.items():
                out.write(b",\n " + orjson.dumps(name) + b": [")
                with open(part, "rb") as src:
                    while chunk := src.read(BUFFER):
                        out.write(chunk)
                out.write(b"\n ]" if self.counts[name] else b"]")
                part.unlink()
            out.write(b"\n}\n")
        os.replace(tmp, self.path)


def _q(text: str) -> str:
    return orjson.dumps(text).decode()


def sites_yaml(sites: list[Site], reference_date: str, command: str) -> str:
    """The ready configuration for the generated cohort (paths relative to the file)."""
    lines = [
        "# RESCUE pipeline configuration for a synthetic cohort.",
        f"# Generated by: {command}",
        "# Paths are relative to this file. Regenerating with the same arguments gives the same",
        "# bytes. The data are synthetic: no real person is described.",
        "study_id: RESCUE",
        f"nct_id: {STUDY_ID}",
        "warehouse: warehouse/rescue.duckdb",
        "report: report",
        f"analysis: {{data_cutoff: {reference_date}, assessment_interval_days: 84, "
        "assessment_window_days: 14}",
        "sites:",
    ]
    for site in sites:
        lines += [
            f"  - id: {site.id}",
            f"    name: {site.name}",
            f"    timezone: {TIMEZONES[site.flavour]}",
            f"    source: {{kind: ndjson, path: {site.id}}}",
        ]
        entries = concept_map(site)
        if not entries:
            lines.append("    concept_map: []")
            continue
        lines.append("    concept_map:")
        for e in entries:
            fields = ", ".join(f"{k}: {_q(v)}" for k, v in e.items())
            lines.append(f"      - {{{fields}}}")
    return "\n".join(lines) + "\n"
