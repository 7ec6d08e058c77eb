"""SMART Backend Services auth: the client assertion's claims, the token cache and its refresh,
and errors that name the site and the variable but never a key, a secret or a token."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rescue_pipeline.config import AuthConfig
from rescue_pipeline.extract.auth import (
    ASSERTION_TYPE,
    AuthError,
    SmartBackendAuth,
    client_assertion,
    make_auth,
)
from tests.extract.conftest import Reply, ScriptedServer

TOKEN_URL = "https://auth.example/token"
SECRET = "s3cret-value-zzzzzzzz"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(tmp_path: Path, key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "k.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_client_assertion_claims(key: rsa.RSAPrivateKey):
    token = client_assertion(
        key, client_id="c1", token_url=TOKEN_URL, key_id="kid-1", now=1_000_000
    )
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS384" and header["kid"] == "kid-1"
    claims = jwt.decode(
        token,
        key.public_key(),
        algorithms=["RS384"],
        audience=TOKEN_URL,
        options={"verify_exp": False},
    )
    assert claims["iss"] == claims["sub"] == "c1"
    assert claims["aud"] == TOKEN_URL
    assert claims["iat"] == 1_000_000
    assert 0 < claims["exp"] - claims["iat"] <= 300
    other = jwt.decode(
        client_assertion(key, client_id="c1", token_url=TOKEN_URL),
        options={"verify_signature": False},
    )
    assert other["jti"] != claims["jti"]
    assert "kid" not in jwt.get_unverified_header(
        client_assertion(key, client_id="c1", token_url=TOKEN_URL)
    )


def test_missing_key_variable_names_site_and_variable():
    config = AuthConfig(
        kind="smart-backend", client_id="c", key_file_env="SITE_C_KEY", token_url=TOKEN_URL
    )
    with pytest.raises(AuthError, match=r"site site-c: environment variable SITE_C_KEY is not set"):
        make_auth("site-c", config, {})


def test_unreadable_or_bad_key_file_names_the_variable_not_the_content(tmp_path: Path):
    config = AuthConfig(kind="smart-backend", client_id="c", key_file_env="K", token_url=TOKEN_URL)
    with pytest.raises(
        AuthError, match=r"site site-c: cannot read the private key file named by K"
    ):
        make_auth("site-c", config, {"K": str(tmp_path / "absent.pem")})
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key PRIVATE-CONTENT")
    with pytest.raises(AuthError) as err:
        make_auth("site-c", config, {"K": str(bad)})
    assert "named by K is not" in str(err.value) and "PRIVATE-CONTENT" not in str(err.value)


def test_no_token_url_and_no_base_url_says_what_is_missing(key_file: Path):
    config = AuthConfig(kind="smart-backend", client_id="c", key_file_env="K")
    with pytest.raises(AuthError, match=r"site site-c: .*needs token_url"):
        make_auth("site-c", config, {"K": str(key_file)})


class TokenServer:
    """An httpx MockTransport token endpoint that counts requests and hands out numbered tokens."""

    def __init__(self, fail: dict[str, str] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.fail = fail

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("smart-configuration"):
            return httpx.Response(200, json={"token_endpoint": TOKEN_URL})
        if self.fail:
            return httpx.Response(401, json=self.fail)
        n = len([r for r in self.requests if r.url == TOKEN_URL])
        return httpx.Response(
            200, json={"access_token": f"tok-{n}", "token_type": "bearer", "expires_in": 300}
        )

    def forms(self) -> list[dict[str, list[str]]]:
        return [parse_qs(r.content.decode()) for r in self.requests if r.url == TOKEN_URL]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_cached_refreshed_before_expiry_and_on_refresh(key_file: Path):
    server, clock = TokenServer(), Clock()
    config = AuthConfig(
        kind="smart-backend", client_id="c1", key_file_env="K", scope="system/*.read", key_id="k1"
    )
    auth = SmartBackendAuth(
        "site-a",
        config,
        {"K": str(key_file)},
        base_url="https://fhir.example/R4/",
        clock=clock,
        transport=httpx.MockTransport(server),
    )
    assert auth.headers() == {"Authorization": "Bearer tok-1"}
    assert server.requests[0].url == "https://fhir.example/R4/.well-known/smart-configuration"
    clock.now += 200  # 300 s token, refreshed 60 s early: still good at 200 s
    assert auth.headers() == {"Authorization": "Bearer tok-1"}
    clock.now += 41
    assert auth.headers() == {"Authorization": "Bearer tok-2"}
    auth.refresh()  # what the HTTP client does after a 401
    assert auth.headers() == {"Authorization": "Bearer tok-3"}
    assert auth.token_requests == 3
    forms = server.forms()
    assert len(forms) == 3
    assert forms[0]["grant_type"] == ["client_credentials"]
    assert forms[0]["scope"] == ["system/*.read"]
    assert forms[0]["client_assertion_type"] == [ASSERTION_TYPE]
    jtis = {
        jwt.decode(f["client_assertion"][0], options={"verify_signature": False})["jti"]
        for f in forms
    }
    assert len(jtis) == 3
    assert auth.secrets() == ("tok-3",)


def test_client_secret_uses_basic_auth_and_stays_secret():
    server = TokenServer()
    config = AuthConfig(
        kind="smart-backend", client_id="c2", client_secret_env="SECRET", token_url=TOKEN_URL
    )
    auth = SmartBackendAuth(
        "site-b", config, {"SECRET": SECRET}, transport=httpx.MockTransport(server)
    )
    assert auth.headers() == {"Authorization": "Bearer tok-1"}
    sent = server.requests[0].headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(f"c2:{SECRET}".encode()).decode()
    assert "client_assertion" not in server.forms()[0]
    assert SECRET in auth.secrets() and SECRET not in repr(auth)


def test_token_endpoint_error_text_is_reported_without_the_secret():
    server = TokenServer(fail={"error": "invalid_client", "error_description": f"bad {SECRET}"})
    config = AuthConfig(
        kind="smart-backend", client_id="c2", client_secret_env="SECRET", token_url=TOKEN_URL
    )
    auth = SmartBackendAuth(
        "site-b", config, {"SECRET": SECRET}, transport=httpx.MockTransport(server)
    )
    with pytest.raises(AuthError) as err:
        auth.headers()
    text = str(err.value)
    assert text.startswith(f"site site-b: token endpoint {TOKEN_URL}: HTTP 401: invalid_client")
    assert SECRET not in text
    assert orjson.dumps(text)  # a plain string


@pytest.mark.parametrize("allowed", [False, True])
def test_a_discovered_plain_http_token_endpoint_gets_no_credentials(
    scripted_server: ScriptedServer, key_file: Path, allowed: bool
) -> None:
    """A server's .well-known may name an http token endpoint: our signed assertion (or client
    secret) would travel unprotected, so it is refused unless the site allows http (tests)."""
    url = scripted_server.url
    scripted_server.on(
        "/.well-known/smart-configuration", Reply(200, {"token_endpoint": f"{url}/token"})
    )
    scripted_server.on(
        "/token", Reply(200, {"access_token": "tok-1", "token_type": "bearer", "expires_in": 300})
    )
    config = AuthConfig(kind="smart-backend", client_id="c1", key_file_env="K")
    auth = SmartBackendAuth(
        "site-a", config, {"K": str(key_file)}, base_url=url, allow_insecure_http=allowed
    )
    if allowed:
        assert auth.headers() == {"Authorization": "Bearer tok-1"}
    else:
        with pytest.raises(AuthError, match=r"^site site-a: GET .*token_endpoint is not an https"):
            auth.headers()
    posted = [s for s in scripted_server.seen if s.path.startswith("/token")]
    assert len(posted) == (1 if allowed else 0)
