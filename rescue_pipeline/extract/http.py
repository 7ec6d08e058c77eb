"""HTTP for the live sources: one retry policy, retrying where retrying helps, failing clearly
where it does not.

- 429 and 503 are the server asking us to come back later: wait what its Retry-After says
  (seconds or an HTTP date), capped by the site's maximum wait, so one odd header cannot stall a
  nightly run.
- Other 5xx, timeouts and dropped connections are usually transient: exponential backoff with
  jitter (so sites recovering from an outage are not hit by every client at once), bounded by the
  number of attempts and by the total time spent on one request.
- 401 once means the token may have expired or been rotated: refresh it and try once more.
- Any other 4xx will not get better by asking again: fail at once with the server's own words
  (OperationOutcome issue diagnostics / details.text), the site and the URL.

TLS verification is always on; a site with a private CA names its bundle (ca_bundle). Secrets are
stripped from every URL and message we write (query parameters that look like credentials, and
the values the auth object holds).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson

from rescue_pipeline.extract.auth import Auth
from rescue_pipeline.extract.ndjson import SourceError

log = logging.getLogger(__name__)

_SECRET_PARAM = re.compile(r"token|secret|password|passwd|key|code|assertion|signature", re.I)
_OUTCOME_TEXT_MAX = 500


class HttpError(SourceError):
    """A request to a site failed for good; the message names the site, the URL and why."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often one request may be retried."""

    max_attempts: int = 5
    max_total_seconds: float = 900.0  # all attempts and waits of one request together
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    max_retry_after_seconds: float = 300.0  # cap on what a server's Retry-After may ask


def redact_url(url: str | httpx.URL) -> str:
    """The URL without user info and with credential-looking query values replaced."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [
            (k, "REDACTED" if _SECRET_PARAM.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe=":/,|",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret value in a text we are about to log or raise."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "REDACTED")
    return text


def outcome_text(body: bytes) -> str | None:
    """The issue texts of an OperationOutcome body, or None when the body is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("resourceType") != "OperationOutcome":
        return None
    texts: list[str] = []
    for issue in data.get("issue") or ():
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        for text in (
            issue.get("diagnostics"),
            details.get("text") if isinstance(details, dict) else None,
        ):
            if isinstance(text, str) and text and text not in texts:
                texts.append(text)
    return "; ".join(texts)[:_OUTCOME_TEXT_MAX] or None


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped by the server before the response was complete"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    return f"network error ({type(exc).__name__})"


class _RedactHttpxUrls(logging.Filter):
    """httpx logs every request's full URL at INFO; a server's next link may carry a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(a) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


def _redact_httpx_logs() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactHttpxUrls) for f in logger.filters):
        logger.addFilter(_RedactHttpxUrls())


_RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class FhirHttpClient:
    """GETs against one site, with the retry policy above. Use as a context manager."""

    def __init__(
        self,
        site_id: str,
        auth: Auth,
        *,
        timeout_seconds: float = 60.0,
        policy: RetryPolicy = RetryPolicy(),
        ca_bundle: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.site_id = site_id
        self._auth = auth
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        _redact_httpx_logs()
        verify = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds),
            verify=verify,
            follow_redirects=False,  # a redirect to another host must not carry our token
            headers={"Accept": "application/fhir+json"},
        )

    def __enter__(self) -> FhirHttpClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _safe(self, text: str) -> str:
        return scrub(text, self._auth.secrets())

    def backoff(self, attempt: int) -> float:
        """Exponential in the attempt number, with jitter in [50%, 100%] of the step."""
        step = min(
            self._policy.backoff_max_seconds,
            self._policy.backoff_base_seconds * 2.0 ** (attempt - 1),
        )
        return step * (0.5 + self._rng.random() / 2)

    def get(self, url: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        """GET with retries; returns a 2xx response with its body read, or raises HttpError."""
        started = self._clock()
        shown = self._safe(redact_url(httpx.URL(url, params=params) if params else url))
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            try:
                response = self._client.get(url, params=params, headers=self._auth.headers())
            except _RETRYABLE as exc:
                self._wait_or_fail(attempt, started, self.backoff(attempt), shown, _describe(exc))
                continue
            except httpx.HTTPError as exc:
                raise HttpError(
                    f"site {self.site_id}: GET {shown}: {type(exc).__name__}: "
                    f"{self._safe(str(exc))}"
                ) from None
            status = response.status_code
            if 200 <= status < 300:
                return response
            if status == 401 and not refreshed:
                refreshed = True
                log.warning("site %s: GET %s: 401, refreshing the token once", self.site_id, shown)
                self._auth.refresh()
                continue
            reason = self._reason(response)
            if status in (429, 503):
                asked = retry_after_seconds(response.headers.get("Retry-After"), self._now())
                wait = self.backoff(attempt) if asked is None else asked
                wait = min(wait, self._policy.max_retry_after_seconds)
            elif status >= 500:
                wait = self.backoff(attempt)
            else:
                raise HttpError(f"site {self.site_id}: GET {shown}: {reason}", status=status)
            self._wait_or_fail(attempt, started, wait, shown, reason, status=status)

    def _reason(self, response: httpx.Response) -> str:
        status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        if response.status_code == 401:
            status += " (still unauthorized after refreshing the token)"
        text = outcome_text(response.content)
        return self._safe(f"{status}: {text}" if text else status)

    def _wait_or_fail(
        self,
        attempt: int,
        started: float,
        wait: float,
        shown: str,
        reason: str,
        *,
        status: int | None = None,
    ) -> None:
        where = f"site {self.site_id}: GET {shown}"
        if attempt >= self._policy.max_attempts:
            raise HttpError(f"{where}: {reason} (gave up after {attempt} attempts)", status=status)
        spent = self._clock() - started
        if spent + wait > self._policy.max_total_seconds:
            raise HttpError(
                f"{where}: {reason} (gave up after {attempt} attempts: waiting {wait:.0f} s more "
                f"would pass the limit of {self._policy.max_total_seconds:.0f} s per request)",
                status=status,
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
