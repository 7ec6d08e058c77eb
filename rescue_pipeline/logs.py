"""Structured logs: one JSON object per line, for log shippers and for grep.

`rescue --log-json FILE ...` (or RESCUE_LOG_JSON=FILE; `-` for stderr) writes every log record
of the pipeline at INFO and above as `{"ts", "level", "logger", "message", ...extra}`. Records
carry sites, load ids, counts and reasons, never resource contents; a filter also masks the
value of every secret the configuration names (and the pseudonym key) wherever it would appear,
so a mistake elsewhere cannot leak one into a log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from rescue_pipeline.config import Config, Environment

MASK = "[redacted]"
HANDLER_NAME = "rescue-json"
# LogRecord's own attributes: anything else on a record came from `extra=` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(entry, default=str)


class RedactSecrets(logging.Filter):
    """Mask secret values in a record's message and extra fields."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self._mask(record.getMessage())
            record.args = None
            for key, value in list(vars(record).items()):
                if key not in _STANDARD and isinstance(value, str):
                    setattr(record, key, self._mask(value))
        return True


def secret_values(config: Config | None) -> list[str]:
    """The values of the environment variables that hold secrets."""
    return list(Environment.current().secret_values(config))


def configure(target: str | None, config: Config | None = None) -> None:
    """Send the pipeline's logs as JSON lines to `target` (a path, or `-` for stderr)."""
    target = target or Environment.current().log_target
    if not target:
        return
    stream: TextIO = sys.stderr if target == "-" else Path(target).open("a", encoding="utf-8")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(secret_values(config)))
    handler.set_name(HANDLER_NAME)
    for name in ("rescue_pipeline", "httpx"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == HANDLER_NAME]:
            logger.removeHandler(old)  # configured again (a second command in one process)
            old.close()
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
