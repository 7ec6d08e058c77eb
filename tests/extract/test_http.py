"""The retry policy against a real local HTTP server: what is retried, how long we wait, and
what the final error says (site, URL, the server's own words, never a secret)."""

from __future__ import annotations

import datetime as dt
import logging
import random

import pytest

from rescue_pipeline.config import AuthConfig
from rescue_pipeline.extract.auth import AuthError, NoAuth, make_auth
from rescue_pipeline.extract.http import (
    FhirHttpClient,
    HttpError,
    RetryPolicy,
    redact_url,
    retry_after_seconds,
)
from rescue_pipeline.extract.retry import transient_status
from tests.extract.conftest import FakeTime, Reply, ScriptedServer

BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}
TOKEN = "s3cr3t-token-value-0123456789"


def client(fake: FakeTime, auth: object = None, **policy: float) -> FhirHttpClient:
    return FhirHttpClient(
        "site-x",
        auth or NoAuth(),  # type: ignore[arg-type]
        timeout_seconds=policy.pop("timeout", 5.0),
        policy=RetryPolicy(**policy),  # type: ignore[arg-type]
        sleep=fake.sleep,
        clock=fake.clock,
        rng=random.Random(7),
    )


def test_429_waits_what_retry_after_says(scripted_server: ScriptedServer, fake_time: FakeTime):
    scripted_server.on("/Patient", Reply(429, headers={"Retry-After": "7"}), Reply(200, BUNDLE))
    with client(fake_time) as c:
        response = c.get(f"{scripted_server.url}/Patient")
    assert response.json() == BUNDLE
    assert scripted_server.hits("/Patient") == 2
    assert fake_time.waits == [7.0]


def test_503_retry_after_http_date_is_capped(scripted_server: ScriptedServer, fake_time: FakeTime):
    later = "Wed, 21 Oct 2099 07:28:00 GMT"  # decades away: capped by the site's maximum
    scripted_server.on("/Patient", Reply(503, headers={"Retry-After": later}), Reply(200, BUNDLE))
    with client(fake_time, max_retry_after_seconds=42) as c:
        c.get(f"{scripted_server.url}/Patient")
    assert fake_time.waits == [42.0]


def test_retry_after_as_date_counts_from_now():
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("soon", now) is None


def test_500_then_200_backs_off_exponentially(scripted_server: ScriptedServer, fake_time: FakeTime):
    scripted_server.on("/Observation", Reply(500), Reply(502), Reply(500), Reply(200, BUNDLE))
    with client(fake_time, backoff_base_seconds=2) as c:
        c.get(f"{scripted_server.url}/Observation")
    assert scripted_server.hits("/Observation") == 4
    assert len(fake_time.waits) == 3
    for n, wait in enumerate(fake_time.waits):  # jitter: 50-100 % of 2, 4, 8 s
        assert 2 * 2**n * 0.5 <= wait <= 2 * 2**n


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 400, 403, 404, 410, 422])
def test_the_client_retries_exactly_what_the_run_failure_sensor_calls_transient(
    scripted_server: ScriptedServer, fake_time: FakeTime, status: int
):
    """One rule (extract.retry.transient_status) for the HTTP client, the token client and the
    run-failure sensor: a status is retried here if and only if a step failing with it is."""
    from rescue_pipeline.dagster_defs.failures import is_transient

    scripted_server.on("/Patient", Reply(status), Reply(200, BUNDLE))
    with client(fake_time) as c:
        try:
            c.get(f"{scripted_server.url}/Patient")
            retried = True
        except HttpError as exc:
            retried = False
            assert is_transient(exc) is False
    assert retried is transient_status(status)
    assert scripted_server.hits("/Patient") == (2 if retried else 1)
    assert is_transient(HttpError("site site-x: gave up", status=status)) is retried


def test_persistent_5xx_gives_up_after_max_attempts(
    scripted_server: ScriptedServer, fake_time: FakeTime
):
    scripted_server.on("/Condition", Reply(500))
    with client(fake_time, max_attempts=3) as c, pytest.raises(HttpError) as err:
        c.get(f"{scripted_server.url}/Condition")
    assert scripted_server.hits("/Condition") == 3
    assert len(fake_time.waits) == 2
    message = str(err.value)
    assert "site site-x" in message and "/Condition" in message
    assert "HTTP 500" in message and "3 attempts" in message


def test_total_time_bounds_the_retries(scripted_server: ScriptedServer, fake_time: FakeTime):
    scripted_server.on("/Condition", Reply(503, headers={"Retry-After": "100"}))
    with client(fake_time, max_attempts=10, max_total_seconds=250) as c:
        with pytest.raises(HttpError, match="limit of 250 s"):
            c.get(f"{scripted_server.url}/Condition")
    assert fake_time.waits == [100.0, 100.0]


def test_dropped_connection_mid_body_is_retried(
    scripted_server: ScriptedServer, fake_time: FakeTime
):
    scripted_server.on(
        "/Procedure",
        Reply(200, b'{"resourceType": "Bundle", "entry": [' + b" " * 500, drop_after=20),
        Reply(200, BUNDLE),
    )
    with client(fake_time) as c:
        assert c.get(f"{scripted_server.url}/Procedure").json() == BUNDLE
    assert scripted_server.hits("/Procedure") == 2
    assert len(fake_time.waits) == 1


def test_dropped_connection_every_time_fails_clearly(
    scripted_server: ScriptedServer, fake_time: FakeTime
):
    scripted_server.on("/Procedure", Reply(200, b"x" * 100, drop_after=10))
    with (
        client(fake_time, max_attempts=2) as c,
        pytest.raises(HttpError, match="connection dropped"),
    ):
        c.get(f"{scripted_server.url}/Procedure")


def test_slow_server_times_out_and_is_retried(scripted_server: ScriptedServer, fake_time: FakeTime):
    scripted_server.on("/Patient", Reply(200, BUNDLE, delay=1.0))
    with client(fake_time, timeout=0.2, max_attempts=2) as c:
        with pytest.raises(HttpError, match="timed out") as err:
            c.get(f"{scripted_server.url}/Patient")
    assert scripted_server.hits("/Patient") == 2
    assert len(fake_time.waits) == 1
    assert "2 attempts" in str(err.value)


def test_404_is_not_retried_and_quotes_the_operation_outcome(
    scripted_server: ScriptedServer, fake_time: FakeTime
):
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "not-found",
                "diagnostics": "Unknown resource type 'Foo'",
            },
            {"severity": "error", "code": "processing", "details": {"text": "see the docs"}},
        ],
    }
    scripted_server.on("/Foo", Reply(404, outcome))
    with client(fake_time) as c, pytest.raises(HttpError) as err:
        c.get(f"{scripted_server.url}/Foo", params={"_count": "10"})
    assert scripted_server.hits("/Foo") == 1
    assert fake_time.waits == []
    assert err.value.status == 404
    message = str(err.value)
    assert message.startswith("site site-x: GET http://127.0.0.1:")
    assert "/Foo?_count=10" in message
    assert "Unknown resource type 'Foo'" in message and "see the docs" in message


def test_401_refreshes_the_token_once(
    scripted_server: ScriptedServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
):
    env = {"SITE_X_TOKEN": "old-token-aaaaaaaa"}
    auth = make_auth("site-x", AuthConfig(kind="bearer", token_env="SITE_X_TOKEN"), env)
    scripted_server.on("/Patient", Reply(401), Reply(200, BUNDLE))
    env["SITE_X_TOKEN"] = "new-token-bbbbbbbb"
    with client(fake_time, auth) as c:
        c.get(f"{scripted_server.url}/Patient")
    sent = [s.headers.get("Authorization") for s in scripted_server.seen]
    assert sent == ["Bearer old-token-aaaaaaaa", "Bearer new-token-bbbbbbbb"]
    assert fake_time.waits == []


def test_token_never_appears_in_errors_or_logs(
    scripted_server: ScriptedServer, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
):
    auth = make_auth("site-x", AuthConfig(kind="bearer", token_env="T"), {"T": TOKEN})
    outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": f"bad token {TOKEN}"}]}
    scripted_server.on("/Patient", Reply(503), Reply(401), Reply(401, outcome))
    caplog.set_level(logging.DEBUG)
    with client(fake_time, auth) as c, pytest.raises(HttpError) as err:
        c.get(f"{scripted_server.url}/Patient", params={"access_token": TOKEN})
    assert scripted_server.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert "still unauthorized" in str(err.value)
    texts = [str(err.value), repr(err.value), repr(auth)]
    texts += [r.getMessage() for r in caplog.records]
    assert len(texts) > 3
    for text in texts:
        assert TOKEN not in text


def test_bearer_without_its_variable_names_site_and_variable():
    with pytest.raises(AuthError) as err:
        make_auth("site-b", AuthConfig(kind="bearer", token_env="SITE_B_TOKEN"), {})
    assert "site site-b" in str(err.value) and "SITE_B_TOKEN" in str(err.value)


def test_smart_backend_without_its_key_variable_names_site_and_variable():
    config = AuthConfig(kind="smart-backend", client_id="c", key_file_env="K")
    with pytest.raises(AuthError, match=r"site site-c: environment variable K is not set"):
        make_auth("site-c", config, {})


def test_redact_url_hides_credential_parameters_and_user_info():
    shown = redact_url("https://user:pw@fhir.example/R4/Patient?_count=5&access_token=abc&code=x")
    assert shown == "https://fhir.example/R4/Patient?_count=5&access_token=REDACTED&code=REDACTED"


def test_tls_verification_cannot_be_turned_off():
    with pytest.raises(TypeError):
        FhirHttpClient("s", NoAuth(), verify=False)  # type: ignore[call-arg]
