"""Reading a response body with a hard size cap, decompressing gzip ourselves so a bomb cannot inflate.

httpx's own decoder inflates each received chunk in one go: 64 KB of gzip can become 64 MB before any
size check runs. Here every inflate call is bounded by the bytes still allowed, so memory never
exceeds the cap, whatever the compression ratio.
"""

from __future__ import annotations

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
