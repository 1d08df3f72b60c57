"""A raw-socket HTTP server on loopback for faults below HTTP: resets, short bodies, drips, hangs, bombs.

Each accepted connection takes the next behaviour of the script (the last one repeats). Every loop is
bounded in time and bytes, and the server stops with its context manager.
"""

from __future__ import annotations

import functools
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

RUN_JSON = b'{"id": "run-1", "status": "passed", "turn_results": []}'
Behaviour = Callable[[socket.socket, threading.Event], None]


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def ok(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_head("200 OK", {"Content-Type": "application/json", "Content-Length": str(len(RUN_JSON)),
                                  "Connection": "close"}) + RUN_JSON)


def reset(conn: socket.socket, stop: threading.Event) -> None:
    """Close with RST instead of FIN: the client sees 'connection reset by peer'."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def short_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_head("200 OK", {"Content-Type": "application/json", "Content-Length": "1000"}) + RUN_JSON[:20])


def drip(conn: socket.socket, stop: threading.Event) -> None:
    """Headers at once, then one body byte every half second: no read ever waits long."""
    conn.sendall(_head("200 OK", {"Content-Type": "application/json", "Content-Length": str(len(RUN_JSON))}))
    for byte in RUN_JSON:
        if stop.wait(0.5):
            return
        try:
            conn.sendall(bytes([byte]))
        except OSError:
            return


def hang(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request and answer nothing."""
    stop.wait(10)


def html_page(conn: socket.socket, stop: threading.Event) -> None:
    body = b"<!DOCTYPE html><html><head><title>Sign in - Corp SSO</title></head><body>login</body></html>"
    conn.sendall(_head("200 OK", {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(body)),
                                  "Set-Cookie": "sso=secret-cookie", "Connection": "close"}) + body)


@functools.cache
def _bomb() -> bytes:
    """About 64 KiB of gzip that inflates to 64 MiB, compressed piecewise so the server stays small."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b" " * (1024 * 1024)
    parts = [compressor.compress(b"[")]
    parts += [compressor.compress(block) for _ in range(64)]
    parts += [compressor.compress(b"]"), compressor.flush()]
    return b"".join(parts)


def gzip_bomb(conn: socket.socket, stop: threading.Event) -> None:
    """A small gzip body that inflates to 64 MiB of JSON-looking whitespace."""
    body = _bomb()
    conn.sendall(_head("200 OK", {"Content-Type": "application/json", "Content-Encoding": "gzip",
                                  "Content-Length": str(len(body)), "Connection": "close"}) + body)


def huge(conn: socket.socket, stop: threading.Event) -> None:
    """Announce 1 GiB and stream it until the client hangs up (bounded by the announced size)."""
    conn.sendall(_head("200 OK", {"Content-Type": "application/json", "Content-Length": str(1 << 30)}))
    chunk = b" " * 65536
    for _ in range((1 << 30) // len(chunk)):
        if stop.is_set():
            return
        try:
            conn.sendall(chunk)
        except OSError:
            return


class FaultServer:
    def __init__(self, script: list[Behaviour]) -> None:
        self.script = list(script)
        self.connections = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []

    def _next(self) -> Behaviour:
        index = min(self.connections, len(self.script) - 1)
        self.connections += 1
        return self.script[index]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn, self._next()), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _handle(self, conn: socket.socket, behaviour: Behaviour) -> None:
        with conn:
            conn.settimeout(5)
            request = b""
            try:
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    data = conn.recv(4096)
                    if not data:
                        return
                    request += data
                self.requests.append(request)
                behaviour(conn, self._stop)
            except OSError:
                return

    @contextmanager
    def running(self) -> Iterator[FaultServer]:
        thread = threading.Thread(target=self._serve, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=5)
            for handler in self._threads:
                handler.join(timeout=5)
            self._sock.close()


def closed_port() -> int:
    """A loopback port with nothing listening: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
