"""A FHIR NPM package (a folder, or the `.tgz` that `npm pack` downloads) → a site folder in the
Bulk Data layout, so data no one here wrote (HL7's published examples) goes through the same
landing and core build as a site's export.

Why a converter and not a new source kind: the landing's contract is the NDJSON folder; keeping
packages outside it means the pipeline is tested on foreign data exactly as it runs on sites'.

What it writes: one `<ResourceType>.ndjson` per type, one resource a line (compact JSON via
orjson), and a `manifest.json` like the synthetic sites'. Nothing received is dropped:
- a Bundle of type collection, transaction, searchset or document is written as a line itself,
  and each entry's resource is also written as a line of its own type (nested Bundles too);
- a `.json` file that does not parse is written as its raw bytes (line breaks turned into spaces)
  into `Unknown.ndjson`, so the landing quarantines it with its reason (`not_json`), and the file
  is named in the returned summary;
- files that are not FHIR resources (package.json, .index.json, JSON without a `resourceType`,
  non-JSON files) are skipped and counted, with the reason, in the returned summary.
Re-serialising through orjson keeps values, not spelling: a decimal `1.50` becomes `1.5`, and an
integer beyond 64 bits becomes a float. The examples are test data, so that is acceptable here.

Reading a `.tgz` never extracts to disk: only regular-file members directly inside the chosen
folder, with a relative name free of `..`, are read, each up to MAX_FILE_BYTES (others are
skipped and counted), so a hostile archive cannot write outside the output folder.
Output is deterministic: files in name order, lines in file order, then entry order.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import orjson

# Bundles whose entries are resources in their own right (a message's or a history's entries are
# about other exchanges: they stay inside their Bundle line only).
EXPLODED_BUNDLE_TYPES = frozenset({"collection", "transaction", "searchset", "document"})
UNKNOWN_TYPE = "Unknown"  # the file for bytes that are not JSON; the landing quarantines them
MAX_FILE_BYTES = 64 * 2**20  # an example larger than this is not an example: skip, do not read
MAX_PACKAGE_BYTES = 4 * 2**30  # unpacked .tgz; the R4 examples are 0.2 GB
MAX_BUNDLE_DEPTH = 8  # Bundles inside Bundles deeper than this stay inside their parent's line
_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_BOM = b"\xef\xbb\xbf"
_Writer = Callable[[str, bytes], None]


@dataclass
class PackageSummary:
    """What a conversion read and wrote, for the caller to print or assert on."""

    files_read: int = 0
    resources: dict[str, int] = field(default_factory=dict)  # lines written per resource type
    bundles_exploded: int = 0
    entries_extracted: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # file name → why it was skipped
    unparsable: list[str] = field(default_factory=list)  # files written raw to Unknown.ndjson

    @property
    def lines(self) -> int:
        return sum(self.resources.values())


@dataclass(frozen=True)
class _Member:
    name: str  # the file's name, no folder
    data: bytes
    mtime: float


def convert_package(
    source: Path,
    out: Path,
    *,
    folder: str = "package",
    transaction_time: str | None = None,
) -> PackageSummary:
    """Write the FHIR resources of `source` as a Bulk Data site folder `out`.

    `source` is an unpacked folder (its `.json` files are read, not its subfolders) or a `.tgz`
    from `npm pack`, of which the files directly inside `folder` are read (`package`, or
    `package/example` for an implementation guide's examples). `out` must be empty or absent.
    `transaction_time` defaults to the package's `date` (package.json), else the newest file time.
    """
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: refusing to mix a package with other files")
    out.mkdir(parents=True, exist_ok=True)
    summary = PackageSummary()
    package_info: dict[str, Any] = {}
    newest = 0.0
    with ExitStack() as stack:
        handles: dict[str, IO[bytes]] = {}

        def write(rtype: str, line: bytes) -> None:
            handle = handles.get(rtype)
            if handle is None:
                handle = stack.enter_context(open(out / f".{rtype}.ndjson.part", "wb"))
                handles[rtype] = handle
            handle.write(line)
            handle.write(b"\n")
            summary.resources[rtype] = summary.resources.get(rtype, 0) + 1

        for member in _members(source, folder, summary, package_info):
            summary.files_read += 1
            newest = max(newest, member.mtime)
            _convert_file(member, write, summary)
    for rtype in summary.resources:
        os.replace(out / f".{rtype}.ndjson.part", out / f"{rtype}.ndjson")
    summary.resources = dict(sorted(summary.resources.items()))
    manifest = {
        "transactionTime": transaction_time or _package_time(package_info, newest),
        "request": _request(source, folder, package_info),
        "requiresAccessToken": False,
        "output": [
            {"type": rtype, "url": f"{rtype}.ndjson", "count": n}
            for rtype, n in summary.resources.items()
        ],
        "error": [],
    }
    part = out / ".manifest.json.part"
    part.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(part, out / "manifest.json")
    return summary


def _convert_file(member: _Member, write: _Writer, summary: PackageSummary) -> None:
    if not member.name.endswith(".json"):
        summary.skipped[member.name] = "not a .json file"
        return
    if member.name in ("package.json", ".index.json") or member.name.startswith("."):
        summary.skipped[member.name] = "package metadata, not a resource"
        return
    data = member.data.removeprefix(_BOM)
    try:
        resource = orjson.loads(data)
    except orjson.JSONDecodeError:
        # Landed as received so the quarantine keeps it (nothing received is dropped).
        summary.unparsable.append(member.name)
        write(UNKNOWN_TYPE, member.data.replace(b"\r", b" ").replace(b"\n", b" "))
        return
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        summary.skipped[member.name] = "JSON, but not a FHIR resource (no resourceType)"
        return
    _write_resource(resource, write, summary, depth=0)


def _write_resource(
    resource: dict[str, Any], write: _Writer, summary: PackageSummary, *, depth: int
) -> None:
    rtype = resource["resourceType"]
    # A resourceType that cannot be a file name still lands, and is quarantined as unknown.
    write(rtype if _TYPE_RE.fullmatch(rtype) else UNKNOWN_TYPE, orjson.dumps(resource))
    if (
        rtype != "Bundle"
        or resource.get("type") not in EXPLODED_BUNDLE_TYPES
        or depth >= MAX_BUNDLE_DEPTH
        or not isinstance(resource.get("entry"), list)
    ):
        return
    summary.bundles_exploded += 1
    for entry in resource["entry"]:
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(inner, dict) and isinstance(inner.get("resourceType"), str):
            summary.entries_extracted += 1
            _write_resource(inner, write, summary, depth=depth + 1)


def _members(
    source: Path, folder: str, summary: PackageSummary, package_info: dict[str, Any]
) -> Iterator[_Member]:
    """The files to convert, in name order; fills `package_info` from package.json if found."""
    if source.is_dir():
        for candidate in (source / "package.json", source.parent / "package.json"):
            if candidate.is_file():
                package_info.update(_json_object(candidate.read_bytes()))
                break
        for path in sorted(source.iterdir(), key=lambda p: p.name):
            if not path.is_file() or path.is_symlink():
                continue
            if path.stat().st_size > MAX_FILE_BYTES:
                summary.skipped[path.name] = f"larger than {MAX_FILE_BYTES} bytes"
                continue
            yield _Member(path.name, path.read_bytes(), path.stat().st_mtime)
        return
    prefix = PurePosixPath(folder.strip("/"))
    with _plain_tar(source) as plain, tarfile.open(fileobj=plain, mode="r:") as tar:
        members = sorted(tar.getmembers(), key=lambda m: m.name)
        for info in members:
            name = PurePosixPath(info.name)
            if name.is_absolute() or ".." in name.parts:
                summary.skipped[info.name] = "unsafe member name (absolute or with ..)"
                continue
            if name == prefix.parent / "package.json" or name == prefix / "package.json":
                if info.isfile() and info.size <= MAX_FILE_BYTES:
                    package_info.update(_json_object(_read_member(tar, info)))
            if name.parent != prefix:
                continue  # another folder of the package: not asked for
            if not info.isfile():
                summary.skipped[name.name] = "not a regular file (link, device or folder)"
                continue
            if info.size > MAX_FILE_BYTES:
                summary.skipped[name.name] = f"larger than {MAX_FILE_BYTES} bytes"
                continue
            yield _Member(name.name, _read_member(tar, info), float(info.mtime))


@contextmanager
def _plain_tar(source: Path) -> Iterator[IO[bytes]]:
    """The archive decompressed once into a temporary file: members are read in name order, and
    seeking backwards in a gzip stream decompresses it again from the start (20x slower on the
    R4 examples). The size is capped so a decompression bomb fails instead of filling the disk."""
    with tempfile.TemporaryFile() as plain:
        with gzip.open(source, "rb") as packed:
            total = 0
            while chunk := packed.read(2**20):
                total += len(chunk)
                if total > MAX_PACKAGE_BYTES:
                    raise ValueError(f"{source}: more than {MAX_PACKAGE_BYTES} bytes unpacked")
                plain.write(chunk)
        plain.seek(0)
        yield plain


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    if handle is None:  # pragma: no cover - isfile() members always have content
        return b""
    with handle:
        return handle.read()


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data.removeprefix(_BOM))
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _package_time(package_info: dict[str, Any], newest: float) -> str:
    """package.json's `date` (YYYYMMDDhhmmss, UTC), else the newest file's time: both fixed by
    the package, so converting the same package twice gives the same bytes."""
    date = package_info.get("date")
    if isinstance(date, str):
        try:
            parsed = dt.datetime.strptime(date[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        except ValueError:
            pass
        else:
            return parsed.isoformat().replace("+00:00", "Z")
    return dt.datetime.fromtimestamp(newest, dt.UTC).isoformat().replace("+00:00", "Z")


def _request(source: Path, folder: str, package_info: dict[str, Any]) -> str:
    """Where the data came from, in place of the $export URL a site's manifest names."""
    name, version = package_info.get("name"), package_info.get("version")
    if isinstance(name, str) and isinstance(version, str):
        where = folder if not source.is_dir() else source.name
        return f"npm:{name}@{version}#{where}"
    return source.name
