"""Client-only fetch legs: how close each HTTP client gets to the latency bound C / L, and its CPU per request.

Each leg keeps `concurrency` requests in flight against the bench server for `warmup + duration` seconds
and counts what completes inside the `duration` window (so a slow client costs the same wall time as a
fast one). CPU is the whole process's (all threads) over the same window.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from bench.payloads import TOKEN
from connector.urls import by_session_url

CLIENTS = ("httpx", "httpx-aiohttp", "aiohttp", "piper", "piper-httpx", "piper+aiohttp-transport")
CHUNK = 0  # sessions per PiperClient.fetch_many call; 0 = one call for the whole window, as run_load makes


class _Window:
    """Counts completions and samples (count, CPU, time) at the start and end of the measured window."""

    def __init__(self) -> None:
        self.done = 0
        self.statuses: Counter[str] = Counter()
        self.marks: list[tuple[int, float, float]] = []

    def completed(self, status: int | str) -> None:
        self.done += 1
        self.statuses[str(status)] += 1

    def mark(self) -> None:
        self.marks.append((self.done, time.process_time(), time.perf_counter()))

    def result(self) -> dict[str, Any]:
        (n0, c0, t0), (n1, c1, t1) = self.marks
        requests = n1 - n0
        return {
            "requests": requests,
            "seconds": t1 - t0,
            "per_second": requests / (t1 - t0),
            "cpu_ms_per_request": (c1 - c0) * 1000 / requests if requests else None,
            "cpu_share": (c1 - c0) / (t1 - t0),
            "statuses": dict(self.statuses),
        }


async def _timed(window: _Window, work: Awaitable[None], warmup: float, duration: float) -> None:
    task = asyncio.ensure_future(work)
    try:
        await asyncio.sleep(warmup)
        window.mark()
        await asyncio.sleep(duration)
        window.mark()
        if task.done():  # the work ended early: surface its exception
            task.result()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _workers(get: Callable[[str], Awaitable[int]], urls: list[str], concurrency: int, window: _Window) -> None:
    cycle = itertools.cycle(urls)

    async def worker() -> None:
        while True:
            url = next(cycle)
            try:
                status: int | str = await get(url)
            except Exception as exc:  # count and go on: a failing client shows as errors, not a crash
                status = type(exc).__name__
            window.completed(status)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _run(client: str, base_url: str, org_id: str, ids: list[str], concurrency: int,
               warmup: float, duration: float, chunk: int = CHUNK) -> dict[str, Any]:
    import httpx

    window = _Window()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    urls = [by_session_url(base_url, org_id, session_id) for session_id in ids]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(60.0)
    if client in ("httpx", "httpx-aiohttp"):
        transport = None
        if client == "httpx-aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=limits)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout, transport=transport) as http:

            async def get(url: str) -> int:
                response = await http.get(url)
                return response.status_code

            await _timed(window, _workers(get, urls, concurrency, window), warmup, duration)
    elif client == "aiohttp":
        import aiohttp
        import yarl

        encoded = {url: yarl.URL(url, encoded=True) for url in urls}
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def get(url: str) -> int:
                async with session.get(encoded[url]) as response:
                    await response.read()
                    return response.status

            await _timed(window, _workers(get, urls, concurrency, window), warmup, duration)
    elif client in ("piper", "piper-httpx", "piper+aiohttp-transport"):
        import inspect

        from connector.client import FetchResult, PiperClient

        options: dict[str, Any] = {}
        if client == "piper+aiohttp-transport":
            from httpx_aiohttp import AiohttpTransport

            options["transport"] = AiohttpTransport(limits=limits)
        elif client == "piper-httpx":  # the httpx path of a PiperClient that offers a choice
            if "http_client" not in inspect.signature(PiperClient).parameters:
                return {"error": "this PiperClient has no http_client option"}
            options["http_client"] = "httpx"

        def on_result(result: FetchResult) -> None:
            window.completed(result.http_status or result.outcome)

        async with PiperClient(base_url=base_url, org_id=org_id, token=TOKEN, concurrency=concurrency,
                               **options) as piper:

            async def chunks() -> None:
                cycle = itertools.cycle(ids)
                size = chunk or 200_000  # 0: one call over more sessions than the window can finish, as run_load
                while True:
                    await piper.fetch_many(list(itertools.islice(cycle, size)), on_result=on_result)

            await _timed(window, chunks(), warmup, duration)
    else:
        raise ValueError(f"unknown client {client!r}; expected one of {CLIENTS}")
    return window.result()


def run(params: dict[str, Any]) -> dict[str, Any]:
    """One client at one (C, L): sessions/s over the window, CPU ms per request."""
    return asyncio.run(
        _run(params["client"], params["base_url"], params["org_id"], params["session_ids"], params["concurrency"],
             params["warmup"], params["duration"], params.get("chunk", CHUNK))
    )


def profile(params: dict[str, Any]) -> dict[str, Any]:
    """The same leg under cProfile: the top functions by own time and by cumulative time."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    result = run(params)
    profiler.disable()
    for sort in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(sort).print_stats(params.get("top", 14))
        result[f"profile_{sort}"] = text.getvalue()
    return result
