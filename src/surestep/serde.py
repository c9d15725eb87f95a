"""JSON in and out of the journal (orjson), strict about what is a JSON value.

A journaled value must come back from the journal as the same value, so only
JSON types pass: dict with str keys, list, tuple (read back as list), str,
int (64-bit), float, bool, None. Datetimes, dataclasses and subclasses of the
builtins are refused rather than silently turned into something else.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from .errors import SerializationError

_STRICT = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_CANONICAL = _STRICT | orjson.OPT_SORT_KEYS

loads = orjson.loads
# JSON encoded already, embedded as it is wherever orjson encodes (a run's result in its row)
Fragment = orjson.Fragment


def dumps(value: Any, what: str, *fmt: object) -> bytes:
    """Encode ``value``; a ``SerializationError`` (a ``TypeError``) names what failed:
    ``what``, or ``what % fmt`` when arguments follow (formatted only on failure)."""
    try:
        encoded = orjson.dumps(value, option=_STRICT)
    except orjson.JSONEncodeError:
        encoded = b"null"  # _encode raises the error that names the part
    # (bytes.find: half the time of ``in``, which takes its argument as a buffer)
    return encoded if encoded.find(b"null") < 0 else _encode(value, _STRICT, what, fmt)


def canonical(value: Any, what: str, *fmt: object) -> bytes:
    """Encode with sorted keys: equal values give equal bytes, for digests."""
    try:
        encoded = orjson.dumps(value, option=_CANONICAL)
    except orjson.JSONEncodeError:
        encoded = b"null"
    return encoded if encoded.find(b"null") < 0 else _encode(value, _CANONICAL, what, fmt)


def _encode(value: Any, option: int, what: str, fmt: tuple[object, ...]) -> bytes:
    """The slow way, for output with a null in it or a refusal: name what is wrong."""
    try:
        encoded = orjson.dumps(value, option=option)
    except orjson.JSONEncodeError as exc:
        raise _refusal(value, what % fmt if fmt else what, exc) from None
    # orjson writes NaN and the infinities as null, which would change the value on
    # its way through the journal: look for them only when a null was written.
    if b"null" in encoded and _offender(value, "")[0] != "<ok>":
        error = ValueError("NaN and infinities are not JSON numbers")
        raise _refusal(value, what % fmt if fmt else what, error)
    return encoded


def _refusal(value: Any, what: str, exc: Exception) -> SerializationError:
    path, bad = _offender(value, "")
    if path == "<ok>":  # orjson saw something the walk did not: name the whole value
        path, bad = "", value
    where = f" at {path}" if path else ""
    return SerializationError(
        f"{what} is not a JSON value{where}: {type(bad).__name__} {_short(bad)} ({exc}). "
        "Journaled values must be JSON: dict, list, str, int, float, bool or None."
    )


def _offender(value: Any, path: str) -> tuple[str, Any]:
    """The first part of ``value`` that is not JSON, and where it is."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"{path}[{key!r}] (key)", key
            found = _offender(item, f"{path}[{key!r}]")
            if found[0] != "<ok>":
                return found
        return "<ok>", None
    if kind in (list, tuple):
        for index, item in enumerate(value):
            found = _offender(item, f"{path}[{index}]")
            if found[0] != "<ok>":
                return found
        return "<ok>", None
    if kind is float:
        return ("<ok>", None) if math.isfinite(value) else (path, value)
    if kind in (str, bool) or value is None:
        return "<ok>", None
    if kind is int and -(2**63) <= value < 2**64:  # orjson refuses the rest ("64-bit")
        return "<ok>", None
    return path, value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
