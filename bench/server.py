"""The bench's simulated Piper API: the by-session endpoint only, as a lean asyncio HTTP/1.1 server.

    python -m bench.server --latency-ms 50 --sessions 20000 --port-file /tmp/port

It serves the same contract as `piper-etl fake-api` for `GET /v1/orgs/{org}/scenarios/runs/by-session/{id}`
(200 with the run, 404 for an unknown session, 401 for a wrong token, keep-alive, the latency added before
answering) with the demo generator's payloads (see `bench.payloads`), but spends ~20 us of CPU per request
instead of ~1 ms, so that one core can serve the 1,280 requests/s that C = 256 at L = 200 ms asks for.
`GET /stats` answers the request counts by status, for the orchestrator's sanity checks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import orjson

from bench.payloads import TOKEN, PayloadSource

_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found"}


class BenchApi:
    """Answers one request head: (status, body, close the connection after answering)."""

    def __init__(self, source: PayloadSource, latency_ms: float) -> None:
        self.source = source
        self.latency = latency_ms / 1000
        self.index = {session_id: i for i, session_id in enumerate(source.session_ids)}
        self.auth = f"bearer {TOKEN}".encode()
        self.prefix = ["", "v1", "orgs", source.org_id, "scenarios", "runs", "by-session"]
        self.counts: Counter[int] = Counter()

    def respond(self, head: bytes) -> tuple[int, bytes, bool]:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            return 400, b'{"detail":"Bad Request"}', True
        method, target, version = parts
        close = version == b"HTTP/1.0"
        authorization = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"authorization":
                authorization = value.strip()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        path = target.split(b"?", 1)[0].decode("latin-1")
        if path == "/stats":
            return 200, orjson.dumps({str(k): v for k, v in self.counts.items()}), close
        if path == "/health":
            return 200, b'{"ok":true}', close
        segments = path.split("/")
        if method != b"GET" or len(segments) != 8 or [unquote(s) for s in segments[:7]] != self.prefix:
            status, body = 404, b'{"detail":"Not Found"}'
        elif authorization.lower() != self.auth:
            status, body = 401, b'{"detail":"Invalid or expired token"}'
        else:
            index = self.index.get(unquote(segments[7]))
            if index is None:
                status, body = 404, b'{"detail":"No scenario run found for session"}'
            else:
                status, body = 200, self.source.body(index)
        self.counts[status] += 1
        return status, body, close


class _Connection(asyncio.Protocol):
    def __init__(self, api: BenchApi) -> None:
        self.api = api
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        while not self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            status, body, close = self.api.respond(head)
            is_api = not head.startswith((b"GET /stats", b"GET /health"))
            if self.api.latency > 0 and is_api:
                self.busy = True
                self.loop.call_later(self.api.latency, self._send, status, body, close)
            else:
                self._send(status, body, close)

    def _send(self, status: int, body: bytes, close: bool) -> None:
        self.busy = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
            % (status, _REASONS.get(status, b"Error"), len(body), b"connection: close\r\n" if close else b"")
        )
        transport.write(head + body)
        if close:
            transport.close()
        else:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _serve(api: BenchApi, port: int, port_file: Path | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(api), "127.0.0.1", port, backlog=2048, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(bound))
        os.replace(tmp, port_file)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--payload-kb", type=float, default=26.0)
    parser.add_argument("--cpu", type=int, help="pin the server to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    source = PayloadSource(seed=args.seed, sessions=args.sessions, payload_kb=args.payload_kb)
    asyncio.run(_serve(BenchApi(source, args.latency_ms), args.port, args.port_file))


if __name__ == "__main__":
    main()
