"""HTTP for the live sources: one retry policy, retrying where retrying helps, failing clearly
where it does not.

- 429 and 503 are the server asking us to come back later: wait what its Retry-After says
  (seconds or an HTTP date), capped by the site's maximum wait, so one odd header cannot stall a
  nightly run.
- 408, 425, other 5xx, timeouts and dropped connections are usually transient (one rule for data
  requests, token requests and the run-failure sensor: extract/retry.py): exponential backoff with
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
import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson

from rescue_pipeline.config import BulkSource, FhirSource
from rescue_pipeline.extract.auth import Auth, make_auth
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

__all__ = [
    "Download",
    "FhirHttpClient",
    "HttpError",
    "RetryPolicy",
    "redact_url",
    "retry_after_seconds",
    "scrub",
]

log = logging.getLogger(__name__)

_SECRET_PARAM = re.compile(r"token|secret|password|passwd|key|code|assertion|signature", re.I)
_OUTCOME_TEXT_MAX = 500
_T = TypeVar("_T")
Params = Mapping[str, str] | tuple[tuple[str, str], ...]
_DEFAULT_POLICY = RetryPolicy()


class HttpError(SourceError):
    """A request to a site failed for good; the message names the site, the URL and why."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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


class _CutShort(Exception):
    """A body that ended before its Content-Length: retried like a dropped connection."""


@dataclass(frozen=True)
class Download:
    """A file streamed to disk: how many bytes and lines it holds, and its sha256 (hashed on the
    way in, so the landing's file ledger need not read it again)."""

    path: Path
    bytes: int
    lines: int
    sha256: str


MAX_RESPONSE_BYTES = 64 * 2**20
"""One search page or status answer at most (a Bulk file is streamed to disk, not bounded)."""
MAX_REQUEST_SECONDS = 600.0
"""A body still arriving after this long fails its request, whatever the socket timeout."""


class FhirHttpClient:
    """Requests to one site, with the retry policy above. Use as a context manager."""

    def __init__(
        self,
        site_id: str,
        auth: Auth,
        *,
        timeout_seconds: float = 60.0,
        policy: RetryPolicy = _DEFAULT_POLICY,
        ca_bundle: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        rng: random.Random | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_request_seconds: float = MAX_REQUEST_SECONDS,
    ) -> None:
        self.site_id = site_id
        self._max_bytes = max_response_bytes
        self._max_seconds = max_request_seconds
        self._auth = auth
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._deadline: tuple[float, str] | None = None  # (clock time, what set it)
        _redact_httpx_logs()
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds),
            verify=tls_context(site_id, ca_bundle),
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

    def shown(self, url: str | httpx.URL) -> str:
        """A URL as our messages show it: no credentials, no secret the auth holds."""
        return self._safe(redact_url(url))

    def limit_total(self, seconds: float, setting: str) -> None:
        """From now, every request (retries and slow bodies included) must end within
        `seconds`: a site's whole load is bounded, not only each request."""
        self._deadline = (self._clock() + seconds, f"{setting} {seconds:g} s")

    def _check_deadline(self, where: str) -> None:
        if self._deadline is not None and self._clock() > self._deadline[0]:
            raise HttpError(f"{where}: the site's load ran past {self._deadline[1]}")

    def backoff(self, attempt: int) -> float:
        """Exponential in the attempt number, with jitter in [50%, 100%] of the step."""
        return backoff_seconds(self._policy, attempt, self._rng)

    def get(
        self,
        url: str,
        params: Params | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """GET with retries; returns a 2xx response with its body read, or raises HttpError.

        The body is bounded: more than max_response_bytes, or a body still arriving after
        max_request_seconds (a server that trickles bytes inside every socket timeout), fails
        the request without retrying it."""
        return self._send("GET", url, params, headers, self._read_bounded)

    def delete(self, url: str) -> httpx.Response:
        """One DELETE, not retried: a courtesy (Bulk Data: the server may free a job's files),
        never worth holding a load for."""
        return self._send("DELETE", url, None, None, self._read_bounded, attempts=1)

    def _read_bounded(self, response: httpx.Response) -> httpx.Response:
        where = f"site {self.site_id}: GET {self.shown(response.request.url)}"
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise HttpError(
                f"{where}: the answer declares {declared} bytes, more than max_response_bytes "
                f"{self._max_bytes}"
            )
        started = self._clock()
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():  # as it arrives: a fixed size would wait for it
            size += len(chunk)
            if size > self._max_bytes:
                raise HttpError(
                    f"{where}: the answer is larger than max_response_bytes {self._max_bytes}"
                )
            if self._clock() - started > self._max_seconds:
                raise HttpError(
                    f"{where}: the answer was still arriving after max_request_seconds "
                    f"{self._max_seconds:g}"
                )
            self._check_deadline(where)
            chunks.append(chunk)
        # what Response.read() itself does once a streamed body is complete
        response._content = b"".join(chunks)
        return response

    def download(
        self,
        url: str,
        dest: Path,
        *,
        send_auth: bool = True,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
    ) -> Download:
        """Stream a file to dest in chunks (never the whole body in memory).

        A body cut short (connection dropped, fewer bytes than Content-Length) is retried from
        the start like any dropped connection; after the last attempt the error says so.
        `send_auth` False keeps our token off a file the server says needs none. A file larger
        than `max_bytes`, or still arriving after `max_seconds`, fails without a retry.
        """
        headers = {"Accept": "application/fhir+ndjson"}
        where = f"site {self.site_id}: GET {self.shown(url)}"

        def consume(response: httpx.Response) -> Download:
            return _stream_to(response, dest, _Bounds(where, max_bytes, max_seconds, self._clock))

        return self._send("GET", url, None, headers, consume, send_auth=send_auth)

    def _send(
        self,
        method: str,
        url: str,
        params: Params | None,
        headers: Mapping[str, str] | None,
        consume: Callable[[httpx.Response], _T],
        *,
        send_auth: bool = True,
        attempts: int | None = None,
    ) -> _T:
        """One request with the retry policy; `consume` reads a 2xx response's body."""
        attempts = attempts or self._policy.max_attempts
        started = self._clock()
        query = httpx.QueryParams(params) if params else None
        shown = self.shown(httpx.URL(url, params=query) if query else url)
        where = f"site {self.site_id}: {method} {shown}"
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            self._check_deadline(where)
            sent = {**(self._auth.headers() if send_auth else {}), **(headers or {})}
            try:
                with self._client.stream(method, url, params=query, headers=sent) as response:
                    status = response.status_code
                    if 200 <= status < 300:
                        return consume(response)
                    response.read()
            except _CutShort as exc:
                self._wait_or_fail(
                    attempt, attempts, started, self.backoff(attempt), where, str(exc)
                )
                continue
            except RETRYABLE as exc:
                if is_tls_failure(exc):
                    raise HttpError(f"{where}: {describe(exc)}") from None
                self._wait_or_fail(
                    attempt, attempts, started, self.backoff(attempt), where, describe(exc)
                )
                continue
            except httpx.HTTPError as exc:
                raise HttpError(f"{where}: {type(exc).__name__}: {self._safe(str(exc))}") from None
            if status == 401 and send_auth and not refreshed:
                refreshed = True
                log.warning("%s: 401, refreshing the token once", where)
                self._auth.refresh()
                continue
            reason = self._reason(response)
            if status in (429, 503):
                asked = retry_after_seconds(response.headers.get("Retry-After"), self._now())
                wait = self.backoff(attempt) if asked is None else asked
                wait = min(wait, self._policy.max_retry_after_seconds)
            elif transient_status(status):
                wait = self.backoff(attempt)
            else:
                raise HttpError(f"{where}: {reason}", status=status)
            self._wait_or_fail(attempt, attempts, started, wait, where, reason, status=status)

    def _reason(self, response: httpx.Response) -> str:
        status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        if response.status_code == 401:
            status += " (still unauthorized after refreshing the token)"
        text = outcome_text(response.content)
        return self._safe(f"{status}: {text}" if text else status)

    def _wait_or_fail(
        self,
        attempt: int,
        attempts: int,
        started: float,
        wait: float,
        where: str,
        reason: str,
        *,
        status: int | None = None,
    ) -> None:
        if attempt >= attempts:
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
            attempts,
            wait,
        )
        self._sleep(wait)


def client_for(site_id: str, source: FhirSource | BulkSource) -> FhirHttpClient:
    """The client a live site's settings ask for: its auth, timeouts, retries and CA bundle."""
    auth = make_auth(
        site_id,
        source.auth,
        base_url=source.base_url,
        ca_bundle=source.ca_bundle,
        max_attempts=source.max_attempts,
        allow_insecure_http=source.allow_insecure_http,
    )
    return FhirHttpClient(
        site_id,
        auth,
        timeout_seconds=source.timeout_seconds,
        policy=RetryPolicy(max_attempts=source.max_attempts),
        ca_bundle=source.ca_bundle,
        max_response_bytes=source.max_response_bytes,
        max_request_seconds=source.max_request_seconds,
    )


@dataclass(frozen=True)
class _Bounds:
    where: str
    max_bytes: int | None
    max_seconds: float | None
    clock: Callable[[], float]

    def check(self, size: int, started: float) -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            raise HttpError(
                f"{self.where}: the file is larger than max_file_bytes {self.max_bytes}"
            )
        if self.max_seconds is not None and self.clock() - started > self.max_seconds:
            raise HttpError(
                f"{self.where}: the file was still arriving after max_file_seconds "
                f"{self.max_seconds:g}"
            )


def _stream_to(response: httpx.Response, dest: Path, bounds: _Bounds) -> Download:
    """Write the body to dest chunk by chunk, counting lines; check it arrived whole."""
    expected = response.headers.get("Content-Length")
    if expected and expected.isdigit() and bounds.max_bytes is not None:
        bounds.check(int(expected), bounds.clock())  # declared too large: not even started
    size = lines = 0
    last = b"\n"
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    started = bounds.clock()
    with dest.open("wb") as out:
        try:
            for chunk in response.iter_bytes(1 << 20):
                bounds.check(size + len(chunk), started)
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
                last = chunk[-1:] or last
        except RETRYABLE as exc:
            got = response.num_bytes_downloaded
            of = f" of {expected}" if expected else ""
            raise _CutShort(
                f"file cut short: {got}{of} bytes received, then {describe(exc)}"
            ) from None
    if expected and expected.isdigit() and response.num_bytes_downloaded != int(expected):
        raise _CutShort(
            f"file cut short: {response.num_bytes_downloaded} of {expected} bytes received"
        )
    if last != b"\n":  # a last line without its newline still counts
        lines += 1
    return Download(dest, size, lines, digest.hexdigest())
