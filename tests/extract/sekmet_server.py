"""Start, restart and stop a real sekmet-fhir server on 127.0.0.1, and load a cohort into it.

Used by the test fixtures (conftest.py) and by bench/bench_extract.py, so both speak to the same
server set up the same way: its own data directory, simulator off, a base_url matching host and
port (links, Bulk URLs and the token audience use it). No pytest here: callers decide whether a
missing server is a skip or a failure.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import orjson
import yaml

SEKMET_ENV = "RESCUE_SEKMET"
REPO = Path(__file__).resolve().parents[2]
INSTALL_HINT = (
    "python3 -m venv .venv-sekmet && .venv-sekmet/bin/pip install sekmet-fhir==0.1.1 "
    f"(or set {SEKMET_ENV} to its sekmet executable)"
)


def sekmet_binary() -> tuple[Path, bool]:
    """The sekmet executable, and whether RESCUE_SEKMET named it (then it must exist)."""
    named = os.environ.get(SEKMET_ENV)
    return (Path(named), True) if named else (REPO / ".venv-sekmet" / "bin" / "sekmet", False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SekmetServer:
    """One sekmet process over a data directory that outlives restarts (its SQLite store does;
    its Bulk export jobs, kept in memory, do not)."""

    def __init__(
        self,
        binary: Path,
        folder: Path,
        *,
        server_auth: dict[str, Any] | None = None,
        log_inbound: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self.headers = headers  # sent by load() and the readiness probe (a bearer token)
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "base_url": self.base_url,
            "data_dir": str(folder / "data"),
            "simulator": {"enabled": False},
            "log_inbound": log_inbound,  # the traffic log: which requests the server received
        }
        if server_auth is not None:
            settings["server_auth"] = server_auth
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "settings.yaml").write_text(yaml.safe_dump(settings))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> SekmetServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self) -> str:
        path = self.folder / "sekmet.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until /metadata answers; RuntimeError with the log's tail if not."""
        self._log = (self.folder / "sekmet.log").open("ab")
        self._proc = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.folder / "settings.yaml")],
            cwd=self.folder,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sekmet exited: {self.log_tail()}")
            try:
                probe = httpx.get(f"{self.base_url}/metadata", timeout=1, headers=self.headers)
                if probe.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sekmet did not answer in {timeout:.0f} s: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Same port, same data; every export job in progress is forgotten."""
        self.stop()
        self.start()

    def load(self, folder: Path, batch: int = 500) -> int:
        """PUT every resource of folder/*.ndjson (ids kept, so references hold) in transaction
        bundles of `batch`; returns how many."""
        total = 0
        with httpx.Client(timeout=120, headers=self.headers) as client:
            for path in sorted(folder.glob("*.ndjson")):
                with path.open("rb") as f:
                    resources = [orjson.loads(x) for x in f if x.strip()]
                for i in range(0, len(resources), batch):
                    entries = [
                        {
                            "resource": r,
                            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                        }
                        for r in resources[i : i + batch]
                    ]
                    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
                    response = client.post(
                        self.base_url,
                        content=orjson.dumps(bundle),
                        headers={"Content-Type": "application/fhir+json"},
                    )
                    if response.status_code >= 300:
                        raise RuntimeError(f"loading {path.name}: {response.text[:500]}")
                total += len(resources)
        return total

    def received(
        self, method: str, path_contains: str, *, expect: int | None = None, timeout: float = 3.0
    ) -> int:
        """How many requests the server logged (log_inbound) with this method and path part.

        The server writes its log entry just after answering, so a count taken right after a
        request may be one short: with `expect`, wait (up to `timeout`) for that count.
        """
        deadline = time.monotonic() + timeout
        while True:
            with sqlite3.connect(self.folder / "data" / "sekmet.db", timeout=30) as db:
                rows = db.execute(
                    "SELECT count(*) FROM traffic WHERE direction = 'inbound' AND method = ? "
                    "AND instr(url, ?) > 0",
                    [method, path_contains],
                ).fetchall()
            count = int(rows[0][0])
            if expect is None or count == expect or time.monotonic() > deadline:
                return count
            time.sleep(0.05)
