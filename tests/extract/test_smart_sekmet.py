"""SMART Backend Services against a real server: sekmet-fhir with private_key_jwt and enforced
scopes (only a registered client's signed assertion gets a token)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline.config import AuthConfig, FhirSource, SiteConfig
from rescue_pipeline.extract.auth import AuthError, NoAuth, SmartBackendAuth, make_auth
from rescue_pipeline.extract.http import FhirHttpClient, HttpError
from rescue_pipeline.site_load import fetch_and_land
from rescue_pipeline.warehouse.database import open_work_db
from tests.extract.conftest import SekmetSmart

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY_ENV = "SITE_S_SMART_KEY"


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_work_db(tmp_path / "rescue.work.duckdb")
    yield connection
    connection.close()


def smart_config(server: SekmetSmart) -> AuthConfig:
    # no token_url: discovered from [base]/.well-known/smart-configuration
    return AuthConfig(
        kind="smart-backend",
        client_id=server.client_id,
        key_file_env=KEY_ENV,
        key_id=server.key_id,
        scope="system/*.read",
    )


def smart_site(server: SekmetSmart) -> SiteConfig:
    return SiteConfig(
        id="site-s",
        source=FhirSource(
            base_url=server.base_url,
            page_size=500,
            auth=smart_config(server),
            allow_insecure_http=True,
        ),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_smart_site_lands_the_cohort_with_one_token(
    sekmet_smart: SekmetSmart, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    site = smart_site(sekmet_smart)
    auth = make_auth(
        site.id,
        smart_config(sekmet_smart),
        {KEY_ENV: str(sekmet_smart.key_file)},
        base_url=sekmet_smart.base_url,
        allow_insecure_http=True,  # the test server is plain http on 127.0.0.1
    )
    assert isinstance(auth, SmartBackendAuth)
    with FhirHttpClient(site.id, auth) as client:
        result = fetch_and_land(con, site, "L1", work_dir=tmp_path, client=client)
    expected = {p.stem: p.read_bytes().count(b"\n") for p in sekmet_smart.cohort.glob("*.ndjson")}
    assert {t: c.received for t, c in result.counts.items() if c.received} == expected
    assert auth.token_requests == 1  # many searches and pages, one token


def test_the_server_refuses_requests_without_a_token(sekmet_smart: SekmetSmart):
    with FhirHttpClient("site-s", NoAuth()) as client, pytest.raises(HttpError) as err:
        client.get(f"{sekmet_smart.base_url}/Patient", params={"_count": "1"})
    assert err.value.status == 401


def test_wrong_key_is_refused_with_a_clear_error(
    sekmet_smart: SekmetSmart, con: duckdb.DuckDBPyConnection, tmp_path: Path
):
    site = smart_site(sekmet_smart)
    auth = make_auth(
        site.id,
        smart_config(sekmet_smart),
        {KEY_ENV: str(sekmet_smart.wrong_key_file)},
        base_url=sekmet_smart.base_url,
        allow_insecure_http=True,  # the test server is plain http on 127.0.0.1
    )
    with FhirHttpClient(site.id, auth) as client, pytest.raises(AuthError) as err:
        fetch_and_land(con, site, "L1", work_dir=tmp_path, client=client)
    text = str(err.value)
    assert text.startswith("site site-s: token endpoint http://127.0.0.1:")
    assert "/auth/token: HTTP 401: invalid_client" in text
    assert "verification failed" in text
    assert "PRIVATE KEY" not in text


def test_token_is_reused_then_refreshed_when_expired_and_after_a_401(sekmet_smart: SekmetSmart):
    clock = Clock()
    auth = SmartBackendAuth(
        "site-s",
        smart_config(sekmet_smart),
        {KEY_ENV: str(sekmet_smart.key_file)},
        base_url=sekmet_smart.base_url,
        clock=clock,
        allow_insecure_http=True,  # the test server is plain http on 127.0.0.1
    )
    url = f"{sekmet_smart.base_url}/Patient"
    with FhirHttpClient("site-s", auth) as client:
        for _ in range(3):
            client.get(url, params={"_count": "1"})
        assert auth.token_requests == 1
        clock.now += 300 - 60  # sekmet's tokens last 300 s here; refreshed 60 s early
        client.get(url, params={"_count": "1"})
        assert auth.token_requests == 2
        auth._token = "revoked"  # the server no longer accepts it: 401, one refresh, success
        client.get(url, params={"_count": "1"})
        assert auth.token_requests == 3
