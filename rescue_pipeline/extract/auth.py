"""Per-site authentication for the live sources: the secret comes from the environment only.

sites.yaml names the environment variable; the value is read when a load starts (and again on
a refresh, so a rotated token is picked up without a restart). The value never appears in an
error, a log record or a repr: errors name the site and the variable, not what it holds.
SMART Backend Services comes later; until then it fails clearly rather than silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from rescue_pipeline.config import AuthConfig
from rescue_pipeline.extract.ndjson import SourceError


class AuthError(SourceError):
    """The site's credentials are missing or not usable: that site's load fails."""


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


def make_auth(site_id: str, config: AuthConfig, environ: Mapping[str, str] | None = None) -> Auth:
    """The Auth for a site's configuration; raises AuthError naming the site."""
    env = os.environ if environ is None else environ
    if config.kind == "none":
        return NoAuth()
    if config.kind == "bearer":
        if not config.token_env:
            raise AuthError(f"site {site_id}: auth kind bearer needs token_env")
        return BearerAuth(site_id, config.token_env, env)
    raise AuthError(
        f"site {site_id}: auth kind {config.kind!r} is not implemented yet "
        "(SMART Backend Services is planned; use kind none or bearer for now)"
    )
