"""How requests travel: two senders with one contract, and every third-party error translated here.

    SendError                   no usable response arrived; the client decides whether to retry
    ├── ConnectFailed           DNS failure, connection refused or unreachable
    ├── ConnectTimedOut         no connection within the connect timeout
    ├── ReadTimedOut            the server went silent for longer than the read timeout
    ├── Disconnected            the server closed the connection before any response (often a pooled
    │                           connection the server had already dropped)
    └── BrokenResponse          a reset, a body shorter than announced, or another protocol error

aiohttp itself retries a GET once, at once, when a connection drops before the response (the pooled
connection the server had closed); the client's own retries come on top of that.

`AiohttpSender` is the default: measured in docs/performance.md, piper-etl over aiohttp spends about
0.2-0.3 CPU ms per request and reaches 96-100 % of the latency bound, while over httpx's own pool it
spends 9-26 ms and reaches 3-33 % (httpx's pool scans every connection per request).
`HttpxSender` serves an injected `httpx` transport (tests use `httpx.MockTransport`) and is the
fallback (`--http-client httpx`). Both decode bodies through `BoundedBody`, never follow redirects and
never turn TLS verification off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
import yarl

from connector.body import BoundedBody


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    content_type: str
    body: bytes
    retry_after: str | None


class SendError(Exception):
    """No usable response; the message names the kind and the library's own words, never headers."""


class ConnectFailed(SendError):
    pass


class ConnectTimedOut(SendError):
    pass


class ReadTimedOut(SendError):
    pass


class Disconnected(SendError):
    pass


class BrokenResponse(SendError):
    pass


class Sender(Protocol):
    async def get(self, url: str) -> RawResponse: ...

    async def aclose(self) -> None: ...


def _words(exc: BaseException) -> str:
    """The exception's class and first message along its cause chain (some libraries leave it empty)."""
    cause: BaseException | None = exc
    while cause is not None:
        text = str(cause).strip()
        if text:
            return f"{type(exc).__name__}: {text[:200]}"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def translate_aiohttp(exc: aiohttp.ClientError) -> SendError:
    """The one place aiohttp's errors become ours."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimedOut(f"connect timed out ({_words(exc)})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectFailed(f"connection failed ({_words(exc)})")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return ReadTimedOut(f"read timed out ({_words(exc)})")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return Disconnected(f"server closed the connection ({_words(exc)})")
    return BrokenResponse(f"broken response ({_words(exc)})")


def translate_httpx(exc: httpx.TransportError) -> SendError:
    """The one place httpx's errors become ours."""
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimedOut(f"connect timed out ({_words(exc)})")
    if isinstance(exc, httpx.ConnectError):
        return ConnectFailed(f"connection failed ({_words(exc)})")
    if isinstance(exc, httpx.TimeoutException):
        return ReadTimedOut(f"read timed out ({_words(exc)})")
    if isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc):
        return Disconnected(f"server closed the connection ({_words(exc)})")
    return BrokenResponse(f"broken response ({_words(exc)})")


class AiohttpSender:
    """aiohttp with one pool of `pool_size` connections, no automatic decompression, no redirects."""

    def __init__(self, headers: dict[str, str], *, connect: float, read: float, pool_size: int, max_body: int) -> None:
        self._max_body = max_body
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=pool_size, limit_per_host=pool_size, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read),
            auto_decompress=False,  # BoundedBody inflates with a size bound
            skip_auto_headers=("Accept-Encoding",),
        )

    async def get(self, url: str) -> RawResponse:
        try:
            async with self._session.get(yarl.URL(url, encoded=True), allow_redirects=False) as response:
                headers = response.headers
                body = BoundedBody(
                    response.status, self._max_body, headers.get("Content-Encoding", ""), headers.get("Content-Length")
                )
                async for chunk in response.content.iter_any():
                    body.feed(chunk)
                return RawResponse(response.status, headers.get("Content-Type", ""), body.finish(),
                                   headers.get("Retry-After"))
        except aiohttp.ClientError as exc:
            raise translate_aiohttp(exc) from exc

    async def aclose(self) -> None:
        await self._session.close()


class HttpxSender:
    """httpx over an optional injected transport, with the same contract as `AiohttpSender`."""

    def __init__(
        self,
        headers: dict[str, str],
        *,
        connect: float,
        read: float,
        pool_size: int,
        max_body: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._max_body = max_body
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(read, connect=connect),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            follow_redirects=False,
            transport=transport,
        )

    async def get(self, url: str) -> RawResponse:
        try:
            async with self._client.stream("GET", url) as response:
                headers = response.headers
                body = BoundedBody(
                    response.status_code, self._max_body, headers.get("content-encoding", ""),
                    headers.get("content-length"),
                )
                if response.is_stream_consumed:  # an in-memory response, as MockTransport makes
                    body.feed(response.content)
                else:
                    async for chunk in response.aiter_raw():
                        body.feed(chunk)
                return RawResponse(response.status_code, headers.get("content-type", ""), body.finish(),
                                   headers.get("retry-after"))
        except httpx.TransportError as exc:
            raise translate_httpx(exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()
