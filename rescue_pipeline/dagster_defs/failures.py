"""Which failures a retry can cure, and the one line a failure leaves in the run log.

A transient fault is one the same request may not meet a minute later: the working database
held by another writer (WarehouseBusy), a site's server unreachable, timing out, dropping the
connection, or answering 408/425/429/5xx after the HTTP layer's own retries gave up. Everything
else is deterministic and retrying cannot help: bad configuration, a missing source folder or
file, a manifest that is not one, 4xx answers, refused credentials, a critical check, a bug.

The lower layers keep their error types and wrap them with `raise ... from None` (one clear line
for the command line); Python still keeps the original as `__context__`, so the chain is read
here and site_load.py needs no change.
"""

import re
from collections.abc import Mapping
from typing import NoReturn

import dagster as dg

from rescue_pipeline.config import Config, ConfigError, Environment
from rescue_pipeline.exception_chain import exception_chain
from rescue_pipeline.extract.auth import AuthError
from rescue_pipeline.extract.http import HttpError, scrub
from rescue_pipeline.extract.ndjson import SourceError
from rescue_pipeline.extract.retry import transient_status, transient_transport
from rescue_pipeline.quality.gate import PublishRefused
from rescue_pipeline.quality.suites import SuiteOutOfMemory
from rescue_pipeline.site_load import SiteLoadError
from rescue_pipeline.warehouse.lock import WarehouseBusy
from rescue_pipeline.warehouse.no_space import no_space_text

_KNOWN = (
    SiteLoadError, SourceError, ConfigError, WarehouseBusy, PublishRefused, SuiteOutOfMemory
)  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """The HTTP layer's own rule (extract.retry), applied to the error that ended a step, and a
    warehouse held by another writer."""
    for error in exception_chain(exc):
        if isinstance(error, WarehouseBusy):
            return True
        if isinstance(error, HttpError) and error.status is not None:
            return transient_status(error.status)
        if isinstance(error, AuthError):  # the token server's own retries gave up, or not
            return error.transient
        if transient_transport(error):
            return True
    return False


def secrets_of(config: Config, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The values of every secret the configuration names (and the pseudonym key)."""
    return Environment(environ).secret_values(config, shortest=4)


def failure_line(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """The one line a failure leaves in the run report: our errors' own message (they name
    site and reason), a full disk said as such, else the error's type and first line."""
    text = str(exc)
    full = no_space_text(text)
    if full:
        return full
    first = text.strip().splitlines()[0] if text.strip() else ""
    line = first if isinstance(exc, _KNOWN) else f"{type(exc).__name__}: {first}".rstrip(": ")
    return scrub(line, secrets)


def fail(exc: Exception, *, site_id: str, secrets: tuple[str, ...]) -> NoReturn:
    """Re-raise `exc` as a dg.Failure that the step's RetryPolicy retries only if transient."""
    transient = is_transient(exc)
    reason = scrub(str(exc) or type(exc).__name__, secrets)
    failure = dg.Failure(
        description=reason,
        metadata={
            "site": site_id,
            "fault": "transient" if transient else "deterministic",
            "retried": transient,
            "error": type(exc).__name__,
        },
        allow_retries=transient,
    )
    if isinstance(exc, _KNOWN):
        raise failure from None  # our message says it all (site and reason), no traceback
    raise failure from exc  # a bug: keep its traceback


def failure_reason(event: dg.DagsterEvent) -> str:
    """A failed step's reason in one line: the Failure's description, else the innermost
    error's message (ours name site and reason)."""
    data = event.step_failure_data
    if data is None:
        return "step failed"
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None or not error.message:
        return "step failed"
    full = no_space_text(error.message)
    if full:
        return full
    # the first line: DuckDB follows its own with advice and a "See also" link
    line = error.message.strip().splitlines()[0]
    # Dagster prefixes the exception's dotted class name; ours already say what failed.
    return re.sub(r"^rescue_pipeline(\.\w+)+: ", "", line)
