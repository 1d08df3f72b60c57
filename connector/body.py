"""Reading a response body with a hard size cap, decompressing gzip ourselves so a bomb cannot inflate.

httpx's own decoder inflates each received chunk in one go: 64 KB of gzip can become 64 MB before any
size check runs. Here every inflate call is bounded by the bytes still allowed, so memory never
exceeds the cap, whatever the compression ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx

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


class _Collector:
    def __init__(self, status: int, limit: int) -> None:
        self.status, self.limit = status, limit
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise BodyTooLarge(self.status, self.limit)
        self.parts.append(data)


async def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The undecoded body chunks; an in-memory response (as a MockTransport makes) gives its bytes."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for raw in response.aiter_raw():
        yield raw


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """The decoded body of a streamed response, refusing to hold more than `limit` bytes."""
    status = response.status_code
    declared = response.headers.get("content-length", "")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    collector = _Collector(status, limit)
    if encoding in ("", "identity"):
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(status, limit)
        async for raw in _raw_chunks(response):
            collector.add(raw)
        return b"".join(collector.parts)
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BadEncoding(status, f"response uses content encoding {encoding!r}, which was not asked for")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding != "deflate" else zlib.MAX_WBITS)
    try:
        async for raw in _raw_chunks(response):
            data = raw
            while data:
                collector.add(inflater.decompress(data, limit - collector.size + 1))
                data = inflater.unconsumed_tail
        collector.add(inflater.flush())
    except zlib.error as exc:
        raise BadEncoding(status, f"compressed body is corrupt ({exc})") from None
    if not inflater.eof:
        raise BadEncoding(status, "compressed body is truncated")
    return b"".join(collector.parts)
