"""Lenient-but-strict readers for one field of a Piper payload, and the error they raise.

Every reader takes the JSON object, the field's name and the path of the object (e.g.
``turn_results[2]``), and either returns the coerced value or raises :class:`PayloadRejected` naming
the field's full path. Paths are only formatted when something is wrong: the happy path stays cheap.

The leniency is deliberate and small: the API reference does not pin types, so a number sent as the
string ``"123"`` or a boolean sent as ``"true"`` is accepted; anything that would need a guess is not.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_TOKEN_COUNT = 10**12
"""The largest plausible judge token count of one criteria result; above it (or below 0) a count is unknown.

A trillion tokens is far beyond any judge call (model contexts hold about a million), and over nine million
counts at the bound still sum inside int64, so one hostile count cannot overflow a total, a view or the report.
"""

_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_MAX_INT_TEXT = 40  # longer digit strings cannot fit int64; checked before int() to bound the work
_SHOWN = 60


class PayloadRejected(ValueError):
    """A payload that cannot be flattened.

    ``reason`` is a short human sentence naming the field and its path, for example
    ``"turn_results[2].criteria_results[0].id is missing"``; it is what lands in ``rejected_payloads``.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def shown(value: object) -> str:
    """A short, safe rendering of a bad value for a rejection reason."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def at(where: str, field: str) -> str:
    """The path of ``field`` inside the object at ``where`` ("" for the top level)."""
    return f"{where}.{field}" if where else field


def _check_utf8(value: str, where: str, field: str) -> str:
    # json.loads (unlike orjson) lets lone surrogates such as "\ud800" through; Arrow cannot encode
    # them, and failing here names the field instead of failing a whole chunk in build_tables.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadRejected(f"{at(where, field)} is not valid UTF-8 text") from None
    return value


def read_id(obj: dict[str, Any], field: str, where: str) -> str:
    """A required, non-empty string identifier."""
    value = obj.get(field)
    if type(value) is str and value:
        return value if value.isascii() else _check_utf8(value, where, field)
    if value is None:
        raise PayloadRejected(f"{at(where, field)} is missing")
    if isinstance(value, str):
        raise PayloadRejected(f"{at(where, field)} is empty")
    raise PayloadRejected(f"{at(where, field)} must be a string, got {shown(value)}")


def read_text(obj: dict[str, Any], field: str, where: str) -> str | None:
    """An optional string, kept exactly as sent (an empty string stays empty)."""
    value = obj.get(field)
    if type(value) is str:  # the common case, first: ASCII text needs no UTF-8 check
        return value if value.isascii() else _check_utf8(value, where, field)
    if value is None:
        return None
    if isinstance(value, str):
        return _check_utf8(value, where, field)
    raise PayloadRejected(f"{at(where, field)} must be a string or null, got {shown(value)}")


def read_int(obj: dict[str, Any], field: str, where: str, *, bits: int) -> int | None:
    """An optional integer of ``bits`` (32 or 64) bits.

    Accepted: an int (not a bool), a string holding only an integer (surrounding spaces allowed), a
    float with an integral value (``3.0``). Anything else is rejected, as is a value out of range.
    """
    value = obj.get(field)
    if value is None:
        return None
    low, high = (INT32_MIN, INT32_MAX) if bits == 32 else (INT64_MIN, INT64_MAX)
    if type(value) is int and low <= value <= high:  # the common case, first
        return value
    number = _integer(value, where, field)
    if number is None or not low <= number <= high:
        raise PayloadRejected(f"{at(where, field)} is out of range for int{bits}: {shown(value)}")
    return number


def read_token_count(obj: dict[str, Any], field: str, where: str) -> int | None:
    """An optional judge token count: an integer from 0 to :data:`MAX_TOKEN_COUNT`, else unknown (None).

    Accepts what :func:`read_int` accepts and rejects what it rejects (a value that is not an integer).
    An integer outside the plausible range (negative, or more than any judge call uses) is not a count
    anyone can sum or price, so it is taken as unknown rather than rejecting the run and its verdicts.
    """
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is int:  # the common case, first
        return value if 0 <= value <= MAX_TOKEN_COUNT else None
    number = _integer(value, where, field)
    return number if number is not None and 0 <= number <= MAX_TOKEN_COUNT else None


def _integer(value: object, where: str, field: str) -> int | None:
    """The integer a JSON value stands for; None for integer text too long for any range we store."""
    if isinstance(value, bool):
        raise PayloadRejected(f"{at(where, field)} must be an integer, got {shown(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        return None if len(value.strip()) > _MAX_INT_TEXT else int(value)
    raise PayloadRejected(f"{at(where, field)} must be an integer, got {shown(value)}")


def read_bool(obj: dict[str, Any], field: str, where: str) -> bool | None:
    """An optional boolean; ``"true"``/``"false"`` (any case) and the integers 0/1 are accepted too."""
    value = obj.get(field)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "false"):
            return word == "true"
    raise PayloadRejected(f"{at(where, field)} must be a boolean, got {shown(value)}")


def read_timestamp(obj: dict[str, Any], field: str, where: str) -> datetime | None:
    """An optional ISO 8601 timestamp, returned as an aware UTC datetime.

    Parsed with :meth:`datetime.fromisoformat` (Python 3.11: ``Z`` and offsets accepted). A value with
    an offset is converted to UTC; a value with NO zone is ASSUMED to be UTC, which is what the
    published examples use. Null or missing gives None; a non-string or unparseable value is rejected.
    """
    value = obj.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadRejected(f"{at(where, field)} must be an ISO 8601 timestamp string, got {shown(value)}")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        if parsed.tzinfo is UTC:
            return parsed
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise PayloadRejected(f"{at(where, field)} is not an ISO 8601 timestamp: {shown(value)}") from None


def read_list(obj: dict[str, Any], field: str, where: str) -> list[Any]:
    """An optional JSON array; missing or null is an empty list."""
    value = obj.get(field)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise PayloadRejected(f"{at(where, field)} must be a list, got {shown(value)}")


def read_object(value: object, path: str) -> dict[str, Any]:
    """A JSON object (the payload itself or one item of a list); ``path`` names it."""
    if isinstance(value, dict):
        return value
    raise PayloadRejected(f"{path} must be an object, got {shown(value)}")
