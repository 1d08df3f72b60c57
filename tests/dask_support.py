"""For the Dask tests: the simulated API counting its requests in flight, and tables compared across two loads."""

from __future__ import annotations

import importlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest
import uvicorn

from connector.fake_api import FakePiper
from connector.fake_api.app import create_app
from schemas.tables import LANDED_TABLES

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VARYING = {"_load_id", "_loaded_at", "load_id", "fetched_at", "elapsed_ms", "rejected_at", "attempts"}
"""Columns that differ between two loads of the same sessions: which load, and when."""


class InFlight:
    """ASGI middleware: how many HTTP requests are being answered now, and the most there ever were at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.now = self.most = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self.now -= 1


@contextmanager
def warm_cluster(token: str) -> Iterator[Any]:
    """A local Dask cluster of 2 worker processes (nannies restart a killed one), `token` in their environment,
    each worker having imported the flow: a task's first run on a cold worker spends seconds importing, and a
    test that needs both workers sending at once must not wait for that."""
    from distributed import Client, LocalCluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIPER_API_TOKEN", token)  # the workers' environment, as a deployment's would be
        with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as local:
            with Client(local) as client:
                client.run(importlib.import_module, "flows.prefect_flow")
            yield local


@contextmanager
def serve_counting(state: FakePiper) -> Iterator[tuple[str, InFlight]]:
    """The simulated API on a free loopback port, wrapped in `InFlight`; yields its base URL and the counter."""
    counter = InFlight(create_app(state))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(counter, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off", ws="none", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the simulated API did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}", counter
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def current_tables(out_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every landed table of a folder's DuckDB database, without the columns that name the load or the time, sorted."""
    return tables_of(duckdb.connect(str(out_dir / "piper.duckdb"), read_only=True))


def tables_of(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    """`current_tables` over any connection holding the landed tables (or views of them); closes it."""
    try:
        tables = {}
        for table in LANDED_TABLES:
            columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall() if row[0] not in VARYING]
            tables[table] = sorted(con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=repr)
        return tables
    finally:
        con.close()


def incomplete_files(parquet_root: Path) -> list[Path]:
    """Data parts without their chunk's `fetch_log` part, and temporary files: what no reader may ever see."""
    complete = {path.name for path in (parquet_root / "fetch_log").glob("*.parquet")}
    found = [path for path in parquet_root.rglob(".*.tmp")]
    for table in LANDED_TABLES:
        for path in (parquet_root / table).glob("*.task-*.parquet"):
            if path.name not in complete:
                found.append(path)
    return found
