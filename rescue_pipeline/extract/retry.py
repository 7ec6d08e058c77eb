"""What every request to a site shares, data or token: when to try again, how long to wait, and
which certificates to trust.

Kept apart from http.py so that the token requests of auth.py follow the same policy without
auth.py importing the HTTP client that imports it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from rescue_pipeline.extract.ndjson import SourceError


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often one request may be retried."""

    max_attempts: int = 5
    max_total_seconds: float = 900.0  # all attempts and waits of one request together
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    max_retry_after_seconds: float = 300.0  # cap on what a server's Retry-After may ask


def backoff_seconds(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Exponential in the attempt number, with jitter in [50%, 100%] of the step (so clients
    that failed together do not all come back at the same instant)."""
    step = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2.0 ** (attempt - 1))
    return step * (0.5 + rng.random() / 2)


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


# Transport failures worth another attempt: the network or the server may recover.
RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

# Answers that ask us to come back: request timeout, too early, too many requests; and every 5xx.
TRANSIENT_STATUS = frozenset({408, 425, 429})


def transient_status(status: int) -> bool:
    """Whether an HTTP answer may be different a moment later (the one rule for data requests,
    token requests and the run-failure sensor)."""
    return status in TRANSIENT_STATUS or status >= 500


def transient_transport(exc: BaseException) -> bool:
    """Whether a failure to get any answer may be cured by asking again: a timeout, a dropped or
    refused connection; never a certificate we do not trust."""
    if isinstance(exc, httpx.TransportError):
        return isinstance(exc, RETRYABLE) and not is_tls_failure(exc)
    return isinstance(exc, ConnectionError | TimeoutError)


def is_tls_failure(exc: httpx.TransportError) -> bool:
    """A certificate we do not trust: asking again will not change it, so it is not retried."""
    return isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)


def describe(exc: httpx.TransportError) -> str:
    """A transport failure in a few words (never the exception's text: it may hold a URL)."""
    if is_tls_failure(exc):
        return "TLS certificate not trusted (a site with a private CA names it in ca_bundle)"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped by the server before the response was complete"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    return f"network error ({type(exc).__name__})"


def tls_context(site_id: str, ca_bundle: Path | None) -> ssl.SSLContext:
    """The system's trusted CAs plus the site's own bundle, if it names one.

    Verification of certificate and host name is always on: there is no setting to turn it off.
    """
    context = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SourceError(
                f"site {site_id}: ca_bundle {ca_bundle}: cannot be read as PEM certificates ({why})"
            ) from None
    return context
