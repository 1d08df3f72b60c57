"""Response bodies: read with a hard size cap, cleared of the API token, decoded as JSON.

httpx's own decoder inflates each received chunk in one go: 64 KB of gzip can become 64 MB before any
size check runs. Here every inflate call is bounded by the bytes still allowed, so memory never
exceeds the cap, whatever the compression ratio.

`TokenRedactor` removes the token from every body before it is parsed or quoted, so a server that
echoes the Authorization header back cannot make us write it anywhere. `decode_json` tells a body
worth fetching again (truncated, an HTML page) from one that never parses however often it is fetched.
"""

from __future__ import annotations

import enum
import json
import re
import string
import zlib
from dataclasses import dataclass

import orjson

ACCEPT_ENCODING = "gzip"
"""The only encoding we ask for; JSON compresses well and gzip is decoded with a bound."""


class BodyTooLarge(Exception):
    """The body (after decompression) is larger than the cap: not worth retrying."""

    def __init__(self, status: int, limit: int) -> None:
        self.status = status
        super().__init__(f"response body larger than {limit} bytes (after decompression); not read")


class BadEncoding(Exception):
    """The body uses an encoding we did not ask for, or its compressed stream is broken."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


class BoundedBody:
    """Collects raw body chunks, inflating gzip/deflate step by step, and never holds more than `limit` bytes.

    Library-neutral: each sender feeds it the raw (still encoded) chunks it receives.
    """

    def __init__(self, status: int, limit: int, encoding: str, declared_length: str | None) -> None:
        self.status, self.limit = status, limit
        self.parts: list[bytes] = []
        self.size = 0
        encoding = (encoding or "identity").strip().lower()
        if encoding in ("", "identity"):
            self._inflater = None
            if declared_length and declared_length.isdigit() and int(declared_length) > limit:
                raise BodyTooLarge(status, limit)
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding != "deflate" else zlib.MAX_WBITS)
        else:
            raise BadEncoding(status, f"response uses content encoding {encoding!r}, which was not asked for")

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise BodyTooLarge(self.status, self.limit)
        self.parts.append(data)

    def feed(self, raw: bytes) -> None:
        if self._inflater is None:
            self._add(raw)
            return
        try:
            data = raw
            while data:
                self._add(self._inflater.decompress(data, self.limit - self.size + 1))
                data = self._inflater.unconsumed_tail
        except zlib.error as exc:
            raise BadEncoding(self.status, f"compressed body is corrupt ({exc})") from None

    def finish(self) -> bytes:
        if self._inflater is not None:
            try:
                self._add(self._inflater.flush())
            except zlib.error as exc:
                raise BadEncoding(self.status, f"compressed body is corrupt ({exc})") from None
            if not self._inflater.eof:
                raise BadEncoding(self.status, "compressed body is truncated")
        return b"".join(self.parts)


REDACTED = "[REDACTED]"
_JSON_SHORT_ESCAPES = '"\\/'
_WRITTEN_AS_THEMSELVES = frozenset(string.ascii_letters + string.digits + "_-.~+=:")


class TokenRedactor:
    """Replaces the API token in bodies and texts by `[REDACTED]`, in every form JSON can write it.

    A JSON string may write each character of the token as itself, as `\\uXXXX` (either case of hex) or,
    for `"`, `\\` and `/`, as a short escape; one pattern matches every mixture, so the decoded payload
    cannot hold the token either. JSON encoders write letters, digits and `_-.~+=:` as themselves (only
    an encoder bent on it would escape them), so for a token made of those, which platform tokens are,
    one substring scan decides whether the pattern runs; for any other token, any backslash does.
    The token must be printable ASCII without white space (the client checks this first).
    """

    __slots__ = ("_escapable", "_pattern", "_raw", "_texts")

    def __init__(self, token: str) -> None:
        self._raw = token.encode("ascii")
        self._escapable = not _WRITTEN_AS_THEMSELVES.issuperset(token)
        forms = []
        for char in token:
            alternatives = [re.escape(char.encode())]
            if char in _JSON_SHORT_ESCAPES:
                alternatives.append(re.escape(b"\\" + char.encode()))
            hex_digits = "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{ord(char):04x}")
            alternatives.append(rb"\\u" + hex_digits.encode())
            forms.append(b"(?:" + b"|".join(alternatives) + b")")
        self._pattern = re.compile(b"".join(forms))
        # In texts: as itself or as repr() quotes it, in any case (some messages lower-case what they quote).
        self._texts = re.compile("|".join(re.escape(form) for form in dict.fromkeys((token, repr(token)[1:-1]))),
                                 re.IGNORECASE)

    def __repr__(self) -> str:
        return "TokenRedactor('****')"

    def body(self, data: bytes) -> bytes:
        """`data` with every JSON spelling of the token replaced."""
        if self._raw in data or (self._escapable and b"\\" in data):
            return self._pattern.sub(REDACTED.encode(), data)
        return data

    def text(self, text: str) -> str:
        """`text` (an error message, a header: short) with the token replaced, in any letter case."""
        return self._texts.sub(REDACTED, text)


class Refetch(enum.Enum):
    """Whether fetching a body that is no JSON payload again can help."""

    HELPS = "helps"  # truncated, empty, or not JSON at all (an HTML error page): retried like a 503
    ONCE = "once"  # a syntax error in a complete body: retried, and never parses if the same bytes return
    USELESS = "useless"  # well-formed but beyond any parser's limit (nesting): never parses


@dataclass(frozen=True, slots=True)
class NotJson:
    """Why a 2xx body gave no payload, and whether fetching it again can help."""

    reason: str
    refetch: Refetch


UTF8_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_json(content_type: str, body: bytes) -> object:
    """The payload of a 2xx body, or a `NotJson` saying why there is none.

    A UTF-8 byte order mark is skipped. A lone surrogate escape (`"\\ud800"`, which orjson refuses) is
    decoded by the standard library and replaced by U+FFFD, so every string handed on is valid Unicode
    (Arrow stores UTF-8). orjson does the common case; the slower paths run only on its failures.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        return NotJson(f"expected JSON but got {media_type!r}: {excerpt(body)}", Refetch.HELPS)
    document = body[len(UTF8_BOM):] if body.startswith(UTF8_BOM) else body
    try:
        return orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        return _decode_refused(document, exc)


def _decode_refused(document: bytes, refused: orjson.JSONDecodeError) -> object:
    size = len(document)
    try:
        text = document.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end == size and exc.reason == "unexpected end of data":  # cut inside a character
            return NotJson(f"body is not valid JSON ({size} bytes): {excerpt(document)}", Refetch.HELPS)
        return NotJson(f"body is not valid UTF-8 (at byte {exc.start}; {size} bytes): {excerpt(document)}",
                       Refetch.ONCE)
    if refused.pos >= len(text.rstrip()):  # the document stops early: a truncated or empty body
        return NotJson(f"body is not valid JSON ({size} bytes): {excerpt(document)}", Refetch.HELPS)
    try:
        payload = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        return NotJson(f"body is JSON nested deeper than the parser allows ({size} bytes): {excerpt(document)}",
                       Refetch.USELESS)
    except ValueError:  # JSONDecodeError, or NaN/Infinity, which orjson refuses too
        return NotJson(
            f"body is not valid JSON ({refused.msg} at character {refused.pos}; {size} bytes): {excerpt(document)}",
            Refetch.ONCE,
        )
    return _replace_surrogates(payload)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _valid(text: str) -> str:
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _replace_surrogates(payload: object) -> object:
    """`payload` (fresh from `json.loads`) with lone surrogates in keys and strings made U+FFFD, in place.

    Iterative, because the document may be nested as deep as the recursion limit let it be parsed.
    """
    if isinstance(payload, str):
        return _valid(payload)
    stack = [payload]
    while stack:
        container = stack.pop()
        if isinstance(container, list):
            for index, item in enumerate(container):
                if isinstance(item, str):
                    container[index] = _valid(item)
                elif isinstance(item, (list, dict)):
                    stack.append(item)
        elif isinstance(container, dict):
            items = list(container.items())
            container.clear()
            for key, item in items:
                if isinstance(item, str):
                    item = _valid(item)
                elif isinstance(item, (list, dict)):
                    stack.append(item)
                container[_valid(key)] = item
    return payload


def excerpt(body: bytes, limit: int = 60) -> str:
    """The first `limit` bytes of a body, quoted, for an error message."""
    return repr(body[:limit]) + ("..." if len(body) > limit else "")
