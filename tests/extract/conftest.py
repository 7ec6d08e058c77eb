"""A small real HTTP server on 127.0.0.1 that answers from a script: faults a real FHIR server
cannot be made to show (dropped connections, slow answers, odd Retry-After) on a real socket."""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

from rescue_pipeline.synth import generate
from tests.extract.sekmet_server import INSTALL_HINT, SEKMET_ENV, SekmetServer, sekmet_binary


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, object] = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None  # send this many body bytes, then close the connection
    delay: float = 0.0  # seconds before answering


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    method: str = "GET"
    body: bytes = b""


class ScriptedServer:
    """Replies are taken in order per path (the path without its query); the last one repeats."""

    def __init__(self) -> None:
        self.script: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.url = ""
        self._lock = threading.Lock()

    def on(self, path: str, *replies: Reply) -> None:
        self.script[path] = list(replies)

    def next_reply(self, path: str) -> Reply:
        with self._lock:
            replies = self.script.get(path.split("?", 1)[0])
            if not replies:
                return Reply(404, {"resourceType": "OperationOutcome", "issue": []})
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def hits(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path.split("?", 1)[0] == path)


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body_in = self.rfile.read(length) if length else b""
            server.seen.append(Seen(self.path, dict(self.headers), self.command, body_in))
            reply = server.next_reply(self.path)
            if reply.delay:
                time.sleep(reply.delay)
            body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
            self.send_response(reply.status)
            if isinstance(reply.body, dict):
                self.send_header("Content-Type", "application/fhir+json")
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if reply.drop_after is not None:
                    self.wfile.write(body[: reply.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_POST = do_GET
        do_DELETE = do_GET

    return Handler


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[ScriptedServer]:
    script = ScriptedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    script.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield script
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    yield from _serve()


@dataclass(frozen=True)
class PrivateCa:
    ca_file: Path  # PEM of a CA no system trusts; the TLS server's certificate is signed by it


def _private_ca(folder: Path) -> tuple[PrivateCa, ssl.SSLContext]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, as a site's private PKI."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RESCUE test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem")
    return PrivateCa(ca_file), context


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ScriptedServer, PrivateCa]]:
    """The scripted server over HTTPS, with a certificate from a private CA."""
    ca, context = _private_ca(tmp_path)
    for server in _serve(context):
        yield server, ca


@dataclass
class FakeTime:
    """Injected sleep and clock: records every wait and advances a virtual clock."""

    waits: list[float] = field(default_factory=list)
    now: float = 0.0

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


# --- a real FHIR server: sekmet-fhir in its own virtual environment (.ci/run installs it) ---


@dataclass(frozen=True)
class Sekmet:
    base_url: str
    cohort: Path  # the site folder loaded into the server: <Type>.ndjson


def cohort_folder(tmp: Path) -> Path:
    """The 30-patient synthetic site every server here is loaded with."""
    if not (tmp / "cohort" / "site-a").exists():
        generate(tmp / "cohort", patients=30, sites=1, seed=1, fault_rate=0)
    return tmp / "cohort" / "site-a"


def start_sekmet(folder: Path, **options: Any) -> SekmetServer:
    """A started sekmet with the cohort loaded; skipped when not installed (failed in CI)."""
    binary, named = sekmet_binary()
    if named and not binary.exists():  # CI names it: a missing server is a failure there
        pytest.fail(f"{SEKMET_ENV}={binary} does not exist: {INSTALL_HINT}")
    if not binary.exists():
        pytest.skip(f"sekmet-fhir is not installed: {INSTALL_HINT}")
    server = SekmetServer(binary, folder / "server", **options)
    try:
        server.start()
        server.load(cohort_folder(folder))
    except RuntimeError as exc:
        server.stop()
        pytest.fail(str(exc))
    return server


@pytest.fixture(scope="session")
def sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sekmet]:
    yield from _run_sekmet(tmp_path_factory)


def _run_sekmet(
    tmp_path_factory: pytest.TempPathFactory,
    server_auth: dict[str, object] | None = None,
    load_headers: dict[str, str] | None = None,
) -> Iterator[Sekmet]:
    tmp = tmp_path_factory.mktemp("sekmet")
    server = start_sekmet(tmp, server_auth=server_auth, headers=load_headers)
    try:
        yield Sekmet(server.base_url, cohort_folder(tmp))
    finally:
        server.stop()


# --- the same server with SMART Backend Services only (private_key_jwt, scopes enforced) ---

SMART_CLIENT_ID = "rescue-pipeline"


@dataclass(frozen=True)
class SekmetSmart:
    base_url: str
    cohort: Path
    client_id: str
    key_file: Path  # PEM private key whose public half is registered (JWKS) for client_id
    key_id: str
    wrong_key_file: Path  # a key the server does not know
    bearer_token: str  # a static token the server also accepts (auth kind bearer)


def _write_rsa_key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key


@pytest.fixture(scope="session")
def sekmet_smart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SekmetSmart]:
    keys = tmp_path_factory.mktemp("smart-keys")
    key = _write_rsa_key(keys / "client.pem")
    _write_rsa_key(keys / "wrong.pem")
    jwk = orjson.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"alg": "RS384", "use": "sig", "kid": "rescue-1"})
    loader_token = secrets.token_urlsafe(24)  # static bearer token: loads the cohort, bearer tests
    server_auth: dict[str, object] = {
        "types": ["smart", "bearer"],
        "tokens": [loader_token],
        "smart_clients": [
            {"client_id": SMART_CLIENT_ID, "jwks": {"keys": [jwk]}, "scopes": "system/*.read"}
        ],
        "token_lifetime": 300,
        "enforce_scopes": True,
    }
    for server in _run_sekmet(
        tmp_path_factory, server_auth, {"Authorization": f"Bearer {loader_token}"}
    ):
        yield SekmetSmart(
            server.base_url,
            server.cohort,
            SMART_CLIENT_ID,
            keys / "client.pem",
            "rescue-1",
            keys / "wrong.pem",
            loader_token,
        )
