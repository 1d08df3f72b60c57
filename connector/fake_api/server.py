"""Run the simulated Piper API on loopback: in a background thread for tests, or blocking for the CLI."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from connector.fake_api.app import FakePiper, create_app

_TRUNCATION_MESSAGE = "ASGI callable returned without completing response."


class _DropTruncationNotice(logging.Filter):
    """Hide uvicorn's error line for the bodies the "truncate" fault cuts short on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _TRUNCATION_MESSAGE


def _quiet_truncation_notices() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _DropTruncationNotice) for existing in logger.filters):
        logger.addFilter(_DropTruncationNotice())


def _config(state: FakePiper, *, host: str, port: int, log_config: bool) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(state),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",  # no websocket stack: nothing to import, nothing to warn about
        log_config=LOGGING_CONFIG if log_config else None,
    )


@contextmanager
def serve(state: FakePiper, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve state on host:port (0 picks a free port) in a background thread; yield the base URL."""
    _quiet_truncation_notices()
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP,
    # and without it keep-alive requests stall ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
        bound_port = sock.getsockname()[1]
        # log_config=None leaves logging alone, so pytest's capture and the caller's handlers stay intact.
        server = uvicorn.Server(_config(state, host=host, port=bound_port, log_config=False))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"fake-piper-{bound_port}", daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"fake Piper API did not start on {host}:{bound_port}")
                time.sleep(0.005)
            yield f"http://{host}:{bound_port}"
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    finally:
        sock.close()


def run_forever(state: FakePiper, *, host: str = "127.0.0.1", port: int) -> None:
    """Serve state on host:port until interrupted (Ctrl-C); for the `piper-etl fake-api` command."""
    _quiet_truncation_notices()
    uvicorn.Server(_config(state, host=host, port=port, log_config=True)).run()
