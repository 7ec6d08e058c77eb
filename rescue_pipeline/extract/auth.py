"""Per-site authentication for the live sources: the secret comes from the environment only.

sites.yaml names the environment variable; the value is read when a load starts (and again on
a refresh, so a rotated token is picked up without a restart). The value never appears in an
error, a log record or a repr: errors name the site and the variable, not what it holds.
SMART Backend Services (client credentials) signs its assertion with a private key whose file
path is in an environment variable, or uses a client secret from one.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rescue_pipeline.config import AuthConfig, Environment
from rescue_pipeline.extract.ndjson import SourceError
from rescue_pipeline.extract.retry import (
    RETRYABLE,
    RetryPolicy,
    backoff_seconds,
    describe,
    is_tls_failure,
    retry_after_seconds,
    tls_context,
    transient_status,
)

log = logging.getLogger(__name__)


class AuthError(SourceError):
    """The site's credentials are missing or not usable: that site's load fails. `transient`:
    the token server kept answering what a retry may cure (429/5xx, timeouts) until the
    attempts ran out, so a later run of the step may succeed."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class Auth(Protocol):
    """What the HTTP client needs: headers for a request, and one way to refresh."""

    def headers(self) -> dict[str, str]: ...

    def refresh(self) -> None: ...

    def secrets(self) -> tuple[str, ...]: ...


class NoAuth:
    """An open server (test servers, or sites behind a VPN that authenticates the network)."""

    def headers(self) -> dict[str, str]:
        return {}

    def refresh(self) -> None:
        return None

    def secrets(self) -> tuple[str, ...]:
        return ()


class BearerAuth:
    """A static bearer token read from the environment variable named in sites.yaml."""

    def __init__(self, site_id: str, token_env: str, environ: Mapping[str, str]) -> None:
        self._site_id = site_id
        self._token_env = token_env
        self._environ = environ
        self._token = self._read()

    def __repr__(self) -> str:  # never show the token, even in a debugger or a traceback
        return f"BearerAuth(site={self._site_id!r}, token_env={self._token_env!r})"

    def _read(self) -> str:
        token = (self._environ.get(self._token_env) or "").strip()
        if not token:
            raise AuthError(
                f"site {self._site_id}: environment variable {self._token_env} is not set "
                "(it holds the site's bearer token)"
            )
        return token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> None:
        """A 401 may mean the token was rotated: read the variable again."""
        self._token = self._read()

    def secrets(self) -> tuple[str, ...]:
        return (self._token,)


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 240  # SMART: exp no more than 5 minutes after now
REFRESH_EARLY_SECONDS = 60.0
_ERROR_TEXT_MAX = 300


def client_assertion(
    private_key: Any,
    *,
    client_id: str,
    token_url: str,
    key_id: str | None = None,
    now: float | None = None,
    lifetime_seconds: int = ASSERTION_LIFETIME_SECONDS,
) -> str:
    """The signed JWT of private_key_jwt: iss = sub = client_id, aud = token URL, a fresh jti.

    RS384 for an RSA key (the SMART default), ES384 for an EC key.
    """
    issued = int(time.time() if now is None else now)
    alg = "ES384" if isinstance(private_key, ec.EllipticCurvePrivateKey) else "RS384"
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": issued,
        "exp": issued + min(lifetime_seconds, 300),
        "jti": uuid.uuid4().hex,
    }
    headers = {"typ": "JWT", **({"kid": key_id} if key_id else {})}
    return jwt.encode(claims, private_key, algorithm=alg, headers=headers)


class SmartBackendAuth:
    """SMART Backend Services: client_credentials with private_key_jwt or a client secret.

    The access token is cached and fetched again shortly before it expires, and on refresh()
    (the HTTP client calls that once after a 401). The token URL is the configured one, else the
    token_endpoint of [base]/.well-known/smart-configuration. Token and discovery requests follow
    the data requests' policy: 429/5xx/timeouts/dropped connections retried with backoff (a token
    server has outages too), TLS verified against the system CAs plus the site's ca_bundle.
    """

    def __init__(
        self,
        site_id: str,
        config: AuthConfig,
        environ: Mapping[str, str],
        *,
        base_url: str | None = None,
        clock: Callable[[], float] = time.time,
        timeout_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        ca_bundle: Path | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        self._site_id = site_id
        self._allow_insecure_http = allow_insecure_http
        self._ca_bundle = ca_bundle
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._config = config
        self._environ = environ
        self._base_url = base_url
        self._clock = clock
        self._timeout = timeout_seconds
        self._transport = transport
        self._token_url = config.token_url
        self._token: str | None = None
        self._expires_at = 0.0
        self.token_requests = 0
        if not config.client_id:
            raise AuthError(f"site {site_id}: auth kind smart-backend needs client_id")
        self._key: Any = None
        self._secret: str | None = None
        if config.key_file_env:
            self._key = self._read_key(config.key_file_env)
        elif config.client_secret_env:
            self._secret = self._read_env(config.client_secret_env, "the client secret")
        else:
            raise AuthError(
                f"site {site_id}: auth kind smart-backend needs key_file_env (private_key_jwt) "
                "or client_secret_env"
            )
        if not self._token_url and not base_url:
            raise AuthError(
                f"site {site_id}: auth kind smart-backend needs token_url "
                "(or the site's base URL to discover it from .well-known/smart-configuration)"
            )

    def __repr__(self) -> str:  # never show the key, the secret or the token
        return f"SmartBackendAuth(site={self._site_id!r}, client_id={self._config.client_id!r})"

    def _read_env(self, name: str, what: str) -> str:
        value = (self._environ.get(name) or "").strip()
        if not value:
            raise AuthError(
                f"site {self._site_id}: environment variable {name} is not set (it holds {what})"
            )
        return value

    def _read_key(self, name: str) -> Any:
        path = Path(self._read_env(name, "the path of the site's private key file"))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AuthError(
                f"site {self._site_id}: cannot read the private key file named by {name}: "
                f"{exc.strerror or type(exc).__name__}"
            ) from None
        try:
            return serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise AuthError(
                f"site {self._site_id}: the file named by {name} is not an unencrypted PEM "
                "private key"
            ) from None

    def _client(self) -> httpx.Client:
        return httpx.Client(
            timeout=self._timeout,
            transport=self._transport,
            verify=tls_context(self._site_id, self._ca_bundle),
        )

    def _with_retries(self, where: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        """send() until it answers something other than 429/5xx, within the retry policy."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = send()
            except RETRYABLE as exc:
                if is_tls_failure(exc):
                    raise AuthError(f"{where}: {describe(exc)}") from None
                reason, wait = describe(exc), backoff_seconds(self._policy, attempt, self._rng)
            except httpx.HTTPError as exc:
                raise AuthError(f"{where}: {type(exc).__name__}") from None
            else:
                status = response.status_code
                if not transient_status(status):
                    return response
                reason = f"HTTP {status}{self._error_text(_json_or_none(response))}"
                asked = retry_after_seconds(
                    response.headers.get("Retry-After"), dt.datetime.now(dt.UTC)
                )
                wait = backoff_seconds(self._policy, attempt, self._rng) if asked is None else asked
                wait = min(wait, self._policy.max_retry_after_seconds)
            if attempt >= self._policy.max_attempts:
                raise AuthError(
                    f"{where}: {reason} (gave up after {attempt} attempts)", transient=True
                )
            log.warning(
                "%s: %s; attempt %d of %d, retrying in %.1f s",
                where,
                reason,
                attempt,
                self._policy.max_attempts,
                wait,
            )
            self._sleep(wait)

    def _discover(self, client: httpx.Client) -> str:
        url = f"{(self._base_url or '').rstrip('/')}/.well-known/smart-configuration"
        response = self._with_retries(
            f"site {self._site_id}: GET {url}",
            lambda: client.get(url, headers={"Accept": "application/json"}),
        )
        endpoint: str | None = None
        if response.status_code == 200:
            try:
                data = response.json()
            except ValueError:
                data = None
            found = data.get("token_endpoint") if isinstance(data, dict) else None
            endpoint = found if isinstance(found, str) and found else None
        if not endpoint:
            raise AuthError(
                f"site {self._site_id}: GET {url}: HTTP {response.status_code}, no token_endpoint "
                "(set auth.token_url in sites.yaml)"
            )
        scheme = endpoint.split(":", 1)[0].lower()
        if scheme != "https" and not (scheme == "http" and self._allow_insecure_http):
            raise AuthError(
                f"site {self._site_id}: GET {url}: token_endpoint is not an https URL; our "
                "credentials would travel unprotected (set an https auth.token_url, or "
                "allow_insecure_http: true for a test server on this machine)"
            )
        return endpoint

    def _fetch(self) -> None:
        with self._client() as client:
            if not self._token_url:
                self._token_url = self._discover(client)
            token_url = self._token_url
            client_id = self._config.client_id or ""

            def post() -> httpx.Response:
                """A fresh assertion each attempt: a server refuses a jti it has seen."""
                form = {"grant_type": "client_credentials"}
                if self._config.scope:
                    form["scope"] = self._config.scope
                auth: httpx.BasicAuth | None = None  # client_secret_basic
                if self._key is not None:
                    form["client_assertion_type"] = ASSERTION_TYPE
                    form["client_assertion"] = client_assertion(
                        self._key,
                        client_id=client_id,
                        token_url=token_url,
                        key_id=self._config.key_id,
                        now=time.time(),
                    )
                else:
                    auth = httpx.BasicAuth(client_id, self._secret or "")
                self.token_requests += 1
                return client.post(
                    token_url,
                    data=form,
                    auth=auth or httpx.USE_CLIENT_DEFAULT,
                    headers={"Accept": "application/json"},
                )

            started = self._clock()
            response = self._with_retries(f"site {self._site_id}: token endpoint {token_url}", post)
        body = _json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict):
            raise AuthError(
                f"site {self._site_id}: token endpoint {token_url}: HTTP {response.status_code}"
                + self._error_text(body)
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError(f"site {self._site_id}: token endpoint {token_url}: no access_token")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
        self._token = token
        self._expires_at = started + lifetime

    def _error_text(self, body: object) -> str:
        if not isinstance(body, dict):
            return ""
        parts = [str(body[k]) for k in ("error", "error_description") if body.get(k)]
        text = ": ".join(parts)
        for secret in self.secrets():
            text = text.replace(secret, "REDACTED")
        return f": {text[:_ERROR_TEXT_MAX]}" if text else ""

    def headers(self) -> dict[str, str]:
        if self._token is None or self._clock() >= self._expires_at - REFRESH_EARLY_SECONDS:
            self._fetch()
        return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> None:
        """A 401: the token may have been revoked or the server restarted; fetch a new one."""
        self._token = None
        self._fetch()

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self._token, self._secret) if s)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def make_auth(
    site_id: str,
    config: AuthConfig,
    environ: Mapping[str, str] | None = None,
    *,
    base_url: str | None = None,
    ca_bundle: Path | None = None,
    max_attempts: int = 5,
    allow_insecure_http: bool = False,
) -> Auth:
    """The Auth for a site's configuration; raises AuthError naming the site.

    base_url lets smart-backend discover its token endpoint when token_url is not configured;
    ca_bundle and max_attempts are the site's, so token requests trust and retry as data does;
    a discovered token endpoint must be https unless allow_insecure_http (a test server).
    """
    env = Environment.current().values if environ is None else environ
    if config.kind == "none":
        return NoAuth()
    if config.kind == "bearer":
        if not config.token_env:
            raise AuthError(f"site {site_id}: auth kind bearer needs token_env")
        return BearerAuth(site_id, config.token_env, env)
    if config.kind == "smart-backend":
        return SmartBackendAuth(
            site_id,
            config,
            env,
            base_url=base_url,
            ca_bundle=ca_bundle,
            policy=RetryPolicy(max_attempts=max_attempts),
            allow_insecure_http=allow_insecure_http,
        )
    raise AuthError(f"site {site_id}: auth kind {config.kind!r} is not known")
