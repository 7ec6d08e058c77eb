"""The token endpoint is retried like data requests (429/5xx/dropped connections), and a site's
ca_bundle is trusted for both token and data requests, over real sockets and real TLS. A
certificate we do not trust fails at once, saying so: verification is never switched off."""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rescue_pipeline.config import AuthConfig
from rescue_pipeline.extract.auth import AuthError, SmartBackendAuth, make_auth
from rescue_pipeline.extract.http import FhirHttpClient, HttpError
from rescue_pipeline.extract.ndjson import SourceError
from rescue_pipeline.extract.retry import RetryPolicy
from tests.extract.conftest import FakeTime, PrivateCa, Reply, ScriptedServer

SECRET = "client-s3cret-value-0000"
TOKEN = {"access_token": "tok-abcdefabcdef", "token_type": "bearer", "expires_in": 300}
BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}


def secret_auth(
    token_url: str, fake: FakeTime, *, ca: PrivateCa | None = None, attempts: int = 4
) -> SmartBackendAuth:
    config = AuthConfig(
        kind="smart-backend", client_id="rescue", client_secret_env="S", token_url=token_url
    )
    return SmartBackendAuth(
        "site-t",
        config,
        {"S": SECRET},
        ca_bundle=ca.ca_file if ca else None,
        policy=RetryPolicy(max_attempts=attempts),
        sleep=fake.sleep,
        rng=random.Random(1),
    )


def test_token_endpoint_503_429_and_a_dropped_connection_are_retried(
    scripted_server: ScriptedServer, fake_time: FakeTime
):
    scripted_server.on(
        "/auth/token",
        Reply(503),
        Reply(429, headers={"Retry-After": "4"}),
        Reply(200, b'{"access_token": "tok', drop_after=10),
        Reply(200, TOKEN),
    )
    auth = secret_auth(f"{scripted_server.url}/auth/token", fake_time)
    assert auth.headers() == {"Authorization": "Bearer tok-abcdefabcdef"}
    assert scripted_server.hits("/auth/token") == 4
    assert auth.token_requests == 4
    assert len(fake_time.waits) == 3 and fake_time.waits[1] == 4.0
    assert all(s.method == "POST" for s in scripted_server.seen)


def test_each_token_attempt_signs_a_fresh_assertion(
    scripted_server: ScriptedServer, fake_time: FakeTime, tmp_path: Path
):
    """Servers refuse a jti they have seen: a retry must not replay the same assertion."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    scripted_server.on("/auth/token", Reply(500), Reply(200, TOKEN))
    config = AuthConfig(
        kind="smart-backend",
        client_id="rescue",
        key_file_env="K",
        token_url=f"{scripted_server.url}/auth/token",
    )
    auth = SmartBackendAuth("site-t", config, {"K": str(tmp_path / "k.pem")}, sleep=fake_time.sleep)
    auth.headers()
    forms = [parse_qs(s.body.decode()) for s in scripted_server.seen]
    jtis = [
        jwt.decode(f["client_assertion"][0], options={"verify_signature": False})["jti"]
        for f in forms
    ]
    assert len(jtis) == 2 and jtis[0] != jtis[1]


def test_token_endpoint_down_gives_up_naming_site_url_and_attempts(
    scripted_server: ScriptedServer, fake_time: FakeTime
):
    scripted_server.on("/auth/token", Reply(502, {"error": "bad_gateway"}))
    auth = secret_auth(f"{scripted_server.url}/auth/token", fake_time, attempts=3)
    with pytest.raises(AuthError) as err:
        auth.headers()
    text = str(err.value)
    assert text.startswith(f"site site-t: token endpoint {scripted_server.url}/auth/token: ")
    assert "HTTP 502" in text and "gave up after 3 attempts" in text
    assert SECRET not in text
    assert scripted_server.hits("/auth/token") == 3
    assert err.value.transient  # a later run of the step may get a token: Dagster retries it


def test_token_endpoint_4xx_is_not_retried(scripted_server: ScriptedServer, fake_time: FakeTime):
    scripted_server.on("/auth/token", Reply(401, {"error": "invalid_client"}))
    auth = secret_auth(f"{scripted_server.url}/auth/token", fake_time)
    with pytest.raises(AuthError, match="HTTP 401: invalid_client") as err:
        auth.headers()
    assert scripted_server.hits("/auth/token") == 1 and fake_time.waits == []
    assert not err.value.transient


def test_ca_bundle_is_trusted_for_token_and_data_requests(
    tls_server: tuple[ScriptedServer, PrivateCa], fake_time: FakeTime
):
    server, ca = tls_server
    server.on("/auth/token", Reply(200, TOKEN))
    server.on("/Patient", Reply(200, BUNDLE))
    auth = make_auth(
        "site-t",
        AuthConfig(
            kind="smart-backend",
            client_id="rescue",
            client_secret_env="S",
            token_url=f"{server.url}/auth/token",
        ),
        {"S": SECRET},
        ca_bundle=ca.ca_file,
    )
    with FhirHttpClient("site-t", auth, ca_bundle=ca.ca_file, sleep=fake_time.sleep) as client:
        assert client.get(f"{server.url}/Patient").json() == BUNDLE
    assert server.seen[-1].headers["Authorization"] == "Bearer tok-abcdefabcdef"


def test_an_untrusted_certificate_fails_at_once_for_data(
    tls_server: tuple[ScriptedServer, PrivateCa], fake_time: FakeTime
):
    server, _ = tls_server
    server.on("/Patient", Reply(200, BUNDLE))
    with FhirHttpClient("site-t", make_auth("site-t", AuthConfig())) as client:
        with pytest.raises(HttpError) as err:
            client.get(f"{server.url}/Patient")
    assert f"site site-t: GET {server.url}/Patient: TLS certificate not trusted" in str(err.value)
    assert "ca_bundle" in str(err.value)
    assert server.hits("/Patient") == 0 and fake_time.waits == []


def test_an_untrusted_certificate_fails_at_once_for_the_token(
    tls_server: tuple[ScriptedServer, PrivateCa], fake_time: FakeTime
):
    server, _ = tls_server
    server.on("/auth/token", Reply(200, TOKEN))
    auth = secret_auth(f"{server.url}/auth/token", fake_time)  # no ca_bundle
    with pytest.raises(AuthError, match="TLS certificate not trusted"):
        auth.headers()
    assert auth.token_requests == 1 and fake_time.waits == []


def test_a_missing_ca_bundle_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SourceError, match=r"site site-t: ca_bundle .*nope.pem: cannot be read"):
        FhirHttpClient("site-t", make_auth("site-t", AuthConfig()), ca_bundle=tmp_path / "nope.pem")
