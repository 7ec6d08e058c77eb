"""A span of an NDJSON file → Arrow tables of accepted versions and quarantine rows.

Pure CPU work with no database, so it can run in worker processes while the landing process
inserts the previous span: the landing's throughput is then bounded by the slower of the two, not
by their sum. A worker reads its own byte range of the file, and hands its versions back as an
Arrow IPC file in shared memory (the multiprocessing pipe is far slower for tens of MB).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import uuid
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pyarrow as pa

from rescue_pipeline.raw.lines import Accepted, Rejected, classify

VERSION_SCHEMA = pa.schema(
    [
        ("resource_type", pa.string()),
        ("resource_id", pa.string()),
        ("version_id", pa.string()),
        ("last_updated", pa.string()),
        ("payload_sha256", pa.string()),
        ("line_number", pa.int64()),
        ("payload", pa.large_string()),
        ("as_received", pa.large_string()),
    ]
)
_KEYS_SCHEMA = pa.schema([VERSION_SCHEMA.field(i) for i in range(len(VERSION_SCHEMA) - 2)])
QUARANTINE_SCHEMA = pa.schema(
    [
        ("resource_type", pa.string()),
        ("resource_id", pa.string()),
        ("line_number", pa.int64()),
        ("reason", pa.string()),
        ("element", pa.string()),
        ("detail", pa.string()),
        ("raw_bytes", pa.binary()),
        ("bytes_sha256", pa.string()),
    ]
)


@dataclass
class ChunkCounts:
    """Per resource type: lines received, accepted and quarantined in one chunk."""

    received: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class ClassifiedChunk:
    versions: pa.Table | None  # None when handed over as a file (versions_path)
    quarantine: pa.Table
    counts: ChunkCounts
    lines: int
    versions_path: str | None = None

    def take_versions(self) -> pa.Table:
        """The versions table; a spilled one is read back zero-copy and its file removed."""
        if self.versions is not None:
            return self.versions
        if self.versions_path is None:
            raise RuntimeError("a classified chunk without versions")
        try:
            return pa.ipc.open_file(pa.memory_map(self.versions_path)).read_all()
        finally:
            os.remove(self.versions_path)


@dataclass(frozen=True)
class Span:
    """Whole lines of one file: bytes [offset, offset + length), the first being line first_line.

    crc32 is of those bytes as planned: the reader checks it, so a file rewritten while it is
    being landed fails the load instead of landing a mix of two files (a checksum, not a
    digest: it guards against change, the file's sha256 in the ledger identifies it). What a
    span classifies to depends on nothing else: the landing numbers arrivals itself."""

    path: str
    offset: int
    length: int
    first_line: int
    file_type: str
    crc32: int | None = None


class FileChanged(Exception):
    """A file's bytes changed between planning its spans and reading one."""


@dataclass(frozen=True)
class FilePlan:
    """A file cut into spans, with the sha256 and size of exactly the bytes the spans cover."""

    spans: list[Span]
    lines: int
    sha256: str
    size: int


def plan_spans(path: str, file_type: str, target_bytes: int) -> FilePlan:
    """Cut a file into spans of about target_bytes at line ends, hashing as it reads: the one
    pass gives the ledger the hash of the very bytes that are landed."""
    spans: list[Span] = []
    whole = hashlib.sha256()
    offset = 0
    line = 1
    with open(path, "rb") as f:
        while True:
            block = f.read(target_bytes)
            if not block:
                break
            if not block.endswith(b"\n"):
                block += f.readline()  # finish the line the block cut
            whole.update(block)
            lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            spans.append(Span(path, offset, len(block), line, file_type, zlib.crc32(block)))
            offset += len(block)
            line += lines
    return FilePlan(spans, line - 1, whole.hexdigest(), offset)


def spill_dir() -> str:
    """Shared memory when the system has it: the hand-over then never touches a disk."""
    shm = "/dev/shm"  # noqa: S108
    return shm if os.path.isdir(shm) else tempfile.gettempdir()


SPILL_PREFIX = "rescue-landing-"


_HELD: dict[str, int] = {}  # spill folder -> the open lock file that marks it in use


def private_spill(base: str) -> str:
    """A folder of this process's own for one load's spilled versions (they hold PHI): mode
    0700, with a lock file held while it is in use, so a later load can tell a dead process's
    folder (its lock is free) and remove it, whatever pids the machine reuses."""
    remove_stale_spills(base)
    folder = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=base)
    lock = os.open(os.path.join(folder, ".lock"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    _HELD[folder] = lock
    return folder


def release_spill(folder: str) -> None:
    """Remove a spill folder this process made (its lock goes with it)."""
    shutil.rmtree(folder, ignore_errors=True)
    lock = _HELD.pop(folder, None)
    if lock is not None:
        os.close(lock)


def remove_stale_spills(base: str) -> int:
    """Remove spill folders no live process holds (left by a killed landing) and loose files of
    earlier versions; returns how many were removed. Only this user's, never via a symlink."""
    removed = 0
    try:
        names = os.listdir(base)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(SPILL_PREFIX):
            continue
        path = os.path.join(base, name)
        try:
            info = os.lstat(path)
            if info.st_uid != os.getuid() or stat.S_ISLNK(info.st_mode):
                continue  # another user's, or a link: not ours to judge
            if stat.S_ISDIR(info.st_mode):
                if path in _HELD or _in_use(path):
                    continue
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
            removed += 1
        except OSError:
            continue
    return removed


def _in_use(folder: str) -> bool:
    """Whether a live process holds the folder's lock (a folder without one: by its pid)."""
    try:
        lock = os.open(os.path.join(folder, ".lock"), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        owner = os.path.basename(folder)[len(SPILL_PREFIX) :].split("-", 1)[0]
        return owner.isdigit() and _alive(int(owner))
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(lock)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_unread(futures: Iterable[Future[ClassifiedChunk]]) -> None:
    """Chunks that will not be landed: cancelled if not begun, else waited for (a running
    classification cannot be cancelled) and their spilled versions removed."""
    for future in futures:
        if future.cancel():
            continue
        try:
            chunk = future.result()
        except Exception:  # noqa: S112 - a span never landed has nothing to report
            continue
        if chunk.versions_path:
            Path(chunk.versions_path).unlink(missing_ok=True)


def classify_span(span: Span, spill: str | None = None) -> ClassifiedChunk:
    """Read and classify a span; with `spill`, write the versions there as an Arrow IPC file."""
    with open(span.path, "rb") as f:
        f.seek(span.offset)
        data = f.read(span.length)
    if span.crc32 is not None and (len(data) != span.length or zlib.crc32(data) != span.crc32):
        raise FileChanged(
            f"{os.path.basename(span.path)} changed while it was being landed (bytes "
            f"{span.offset}-{span.offset + span.length}); nothing of this load was kept"
        )
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    chunk = classify_chunk(lines, span.first_line, span.file_type)
    if spill is None or chunk.versions is None:
        return chunk
    path = os.path.join(spill, f"{uuid.uuid4().hex}.arrow")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # private from birth
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, chunk.versions.schema) as writer:
        writer.write_table(chunk.versions)
    chunk.versions, chunk.versions_path = None, path
    return chunk


def classify_chunk(lines: list[bytes], first_line: int, file_type: str) -> ClassifiedChunk:
    """Classify lines (without line ends) numbered from `first_line`."""
    cols: dict[str, list[object]] = {name: [] for name in _KEYS_SCHEMA.names}
    payloads = bytearray()
    offsets = array("q", [0])
    originals = bytearray()  # lines kept as received (those unlike their payload)
    original_offsets = array("q", [0])
    has_original: list[bool] = []
    quarantined: dict[str, list[object]] = {name: [] for name in QUARANTINE_SCHEMA.names}
    counts = ChunkCounts()
    seen: set[str] = set()
    accepted: dict[str, int] = {}
    types, ids, versions_, updated, shas, numbers = (cols[name] for name in _KEYS_SCHEMA.names)
    for number, line in enumerate(lines, start=first_line):
        outcome = classify(line.removesuffix(b"\r"), first_line=number == 1)
        if type(outcome) is Accepted:
            rtype, rid, version_id, last_updated, payload, sha, original = outcome
            accepted[rtype] = accepted.get(rtype, 0) + 1
            if sha in seen:
                continue  # the same version twice in a span: accepted, stored once
            seen.add(sha)
            types.append(rtype)
            ids.append(rid)
            versions_.append(version_id)
            updated.append(last_updated)
            shas.append(sha)
            numbers.append(number)
            payloads += payload
            offsets.append(len(payloads))
            if original is not None:
                originals += original
            original_offsets.append(len(originals))
            has_original.append(original is not None)
        else:
            outcome = cast(Rejected, outcome)
            rtype = outcome.resource_type or file_type
            counts.quarantined[rtype] += 1
            counts.reasons[outcome.reason] += 1
            quarantined["resource_type"].append(rtype)
            quarantined["resource_id"].append(outcome.resource_id)
            quarantined["line_number"].append(number)
            quarantined["reason"].append(outcome.reason)
            quarantined["element"].append(outcome.element)
            quarantined["detail"].append(outcome.detail)
            quarantined["raw_bytes"].append(line)
            quarantined["bytes_sha256"].append(hashlib.sha256(line).hexdigest())
            counts.received[rtype] += 1
    counts.accepted.update(accepted)
    counts.received.update(accepted)
    # orjson writes valid UTF-8, so the buffer becomes a string column without re-encoding.
    payload = pa.LargeStringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(bytes(payloads))
    )
    # an accepted line is valid UTF-8 (orjson read it), so the same holds for the originals
    valid = pa.array(has_original, type=pa.bool_()).buffers()[1]
    as_received = pa.LargeStringArray.from_buffers(
        len(original_offsets) - 1,
        pa.py_buffer(original_offsets),
        pa.py_buffer(bytes(originals)),
        valid,
    )
    versions = (
        pa.Table.from_pydict(cols, schema=_KEYS_SCHEMA)
        .append_column(VERSION_SCHEMA.field("payload"), payload)
        .append_column(VERSION_SCHEMA.field("as_received"), as_received)
    )
    return ClassifiedChunk(
        versions=versions,
        quarantine=pa.Table.from_pydict(quarantined, schema=QUARANTINE_SCHEMA),
        counts=counts,
        lines=len(lines),
    )
