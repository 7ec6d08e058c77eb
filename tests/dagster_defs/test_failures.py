"""Which failures are retried: transient faults yes, deterministic ones never."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import httpx
import pytest

from rescue_pipeline.config import ConfigError, load_config
from rescue_pipeline.dagster_defs.failures import fail, is_transient, secrets_of
from rescue_pipeline.extract.auth import AuthError
from rescue_pipeline.extract.http import HttpError
from rescue_pipeline.extract.ndjson import SourceError
from rescue_pipeline.quality.gate import PublishRefused
from rescue_pipeline.site_load import SiteLoadError, WarehouseBusy


def _as_site_load_error(inner: BaseException) -> SiteLoadError:
    """What load_site raises: the source's error wrapped `from None` (kept as __context__)."""
    try:
        try:
            raise inner
        except Exception as exc:
            raise SiteLoadError(str(exc)) from None
    except SiteLoadError as wrapped:
        return wrapped


def _transport_gave_up() -> HttpError:
    try:
        try:
            raise httpx.ConnectError("connection refused")
        except httpx.ConnectError:
            raise HttpError("site x: GET u: cannot connect (gave up after 5 attempts)") from None
    except HttpError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (WarehouseBusy("held by another process"), True),
        (_as_site_load_error(HttpError("site x: 503", status=503)), True),
        (_as_site_load_error(HttpError("site x: 429", status=429)), True),
        (_as_site_load_error(_transport_gave_up()), True),
        (_as_site_load_error(HttpError("site x: 408", status=408)), True),
        (_as_site_load_error(HttpError("site x: 404", status=404)), False),
        # a certificate we do not trust stays untrusted however often we ask
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), False),
        (TimeoutError("read timed out"), True),
        (_as_site_load_error(HttpError("site x: 401", status=401)), False),
        (_as_site_load_error(SourceError("site x: source folder missing")), False),
        (_as_site_load_error(AuthError("site x: SITE_X_TOKEN is not set")), False),
        (_as_site_load_error(AuthError("site x: HTTP 503 (gave up)", transient=True)), True),
        (ConfigError("sites.yaml: site 'x': no such site"), False),
        (PublishRefused("critical check failed"), False),
        (KeyError("a bug"), False),
    ],
)
def test_transient_or_deterministic(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_failure_never_carries_a_secret(write_config: Callable[..., Path]) -> None:
    path = write_config(
        {
            "study_id": "RESCUE",
            "sites": [
                {
                    "id": "site-b",
                    "source": {
                        "kind": "fhir",
                        "base_url": "https://fhir.example/R4",
                        "auth": {"kind": "bearer", "token_env": "SITE_B_TOKEN"},
                    },
                }
            ],
        }
    )
    secrets = secrets_of(load_config(path), {"SITE_B_TOKEN": "tok-3f9a0c"})
    with pytest.raises(dg.Failure) as raised:
        fail(
            SiteLoadError("site site-b: echoed tok-3f9a0c back"), site_id="site-b", secrets=secrets
        )
    assert "tok-3f9a0c" not in (raised.value.description or "")
    assert raised.value.allow_retries is False
    assert raised.value.metadata["site"].value == "site-b"
