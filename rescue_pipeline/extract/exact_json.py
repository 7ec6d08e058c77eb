"""JSON read and written again without changing what it says: numbers keep their text, and an
object that repeats a key keeps every value.

A REST search answers with Bundles; each resource in it becomes one NDJSON line for the
landing. orjson alone would read `1.50` as 1.5, a 30-digit integer as a float, and keep only the
last of two values of one key, so the line landed would no longer be what the server sent.
Here numbers stay as their text (written back through orjson.Fragment) and repeated keys
survive, so the landing sees and quarantines them as it does in a file. Key order is kept;
whitespace is not.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS


class Number:
    """A JSON number as written."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class RepeatedKeys(dict[str, Any]):
    """An object that repeats a key: reads as its last values, writes every pair."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    return result if len(result) == len(pairs) else RepeatedKeys(pairs)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_exact(data: bytes) -> Any:
    """Parse JSON keeping every number's text; raises ValueError (or RecursionError)."""
    return json.loads(
        data,
        parse_float=Number,
        parse_int=Number,
        parse_constant=_no_constants,
        object_pairs_hook=_object,
    )


def _default(value: Any) -> orjson.Fragment:
    if isinstance(value, Number):
        return orjson.Fragment(value.text)
    if isinstance(value, RepeatedKeys):
        members = b",".join(
            orjson.dumps(key) + b":" + dumps_exact(item) for key, item in value.pairs
        )
        return orjson.Fragment(b"{" + members + b"}")
    if isinstance(value, dict):  # another dict subclass: as a plain object
        return orjson.Fragment(dumps_exact(dict(value)))
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps_exact(value: Any) -> bytes:
    """Compact JSON of what loads_exact read: numbers as they were written, repeated keys kept."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def _plain_number(value: Any) -> Any:
    if isinstance(value, Number):
        return json.loads(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps_for_quarantine(value: Any) -> bytes:
    """A resource dumps_exact cannot write (a lone surrogate, nesting past orjson's limit) as
    plain ASCII JSON, so that it reaches the landing and is quarantined there with its reason
    instead of failing the site; numbers lose their text, the line is not landed anyway."""
    return json.dumps(value, ensure_ascii=True, default=_plain_number).encode()
