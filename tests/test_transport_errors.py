"""Third-party errors are translated once, at the boundary, into the connector's own error kinds."""

from __future__ import annotations

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from connector.transport import (
    BrokenResponse,
    ConnectFailed,
    ConnectTimedOut,
    Disconnected,
    ReadTimedOut,
    SendError,
    translate_aiohttp,
    translate_httpx,
)

KEY = ConnectionKey("api.letpiper.com", 443, True, True, None, None, None)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), ConnectTimedOut),
        (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "Connection refused")), ConnectFailed),
        (aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "Name or service not known")), ConnectFailed),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), ReadTimedOut),
        (aiohttp.ServerDisconnectedError(), Disconnected),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), BrokenResponse),
        (aiohttp.ClientPayloadError("Response payload is not completed"), BrokenResponse),
    ],
)
def test_aiohttp_errors_map_to_our_kinds(error: aiohttp.ClientError, kind: type[SendError]) -> None:
    translated = translate_aiohttp(error)
    assert type(translated) is kind and type(error).__name__ in str(translated)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ConnectTimeout("timed out"), ConnectTimedOut),
        (httpx.ConnectError("[Errno 111] Connection refused"), ConnectFailed),
        (httpx.ReadTimeout("timed out"), ReadTimedOut),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), Disconnected),
        (httpx.RemoteProtocolError("peer closed connection without sending complete message body"), BrokenResponse),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), BrokenResponse),
    ],
)
def test_httpx_errors_map_to_our_kinds(error: httpx.TransportError, kind: type[SendError]) -> None:
    translated = translate_httpx(error)
    assert type(translated) is kind and type(error).__name__ in str(translated)
