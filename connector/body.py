"""Response bodies: read with a hard size cap, and cleared of the API token.

httpx's own decoder inflates each received chunk in one go: 64 KB of gzip can become 64 MB before any
size check runs. Here every inflate call is bounded by the bytes still allowed, so memory never
exceeds the cap, whatever the compression ratio.

`TokenRedactor` removes the token from every body before it is parsed or quoted, so a server that
echoes the Authorization header back cannot make us write it anywhere.
"""

from __future__ import annotations

import re
import string
import zlib

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
