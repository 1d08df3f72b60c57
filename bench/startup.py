"""Where the time of a one-session load goes: imports, open and plan, HTTP, flatten + Parquet write, commit.

Runs the steps of `flows.pipeline.run_load` one by one in a fresh process (the calls a Prefect task makes,
timed apart). The HTTP request is also timed alone, on a fresh client, to show its share of the chunk step.
"""

from __future__ import annotations

import time
from typing import Any

_T0 = time.perf_counter()


def profile(params: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    started = time.perf_counter()
    import flows.cli  # noqa: F401  (the import the command pays before doing anything)
    from flows import pipeline
    from flows.settings import LoadSettings
    from warehouse.load import open_load

    imported = time.perf_counter()
    import asyncio

    from bench.payloads import TOKEN

    settings = LoadSettings(
        org_id=params["org_id"], base_url=params["base_url"], out_dir=Path(params["out_dir"]), concurrency=16
    )
    times: dict[str, float] = {"import flows.cli": imported - started}
    t = time.perf_counter()
    load = open_load(settings.out_dir, format=settings.format, lock_timeout=settings.lock_timeout,
                     expected_sessions=len(params["session_ids"]))
    plan = pipeline.plan_load(load, params["session_ids"], settings)
    times["open the load and plan"] = time.perf_counter() - t

    async def http_alone() -> None:
        async with pipeline.make_client(settings, TOKEN) as client:
            await client.fetch_many(plan.to_fetch)

    async def chunk() -> list[pipeline.ChunkReport]:
        async with pipeline.make_client(settings, TOKEN) as client:
            return await pipeline.fetch_and_land(client, plan.to_fetch, settings, sink=load.land, stream="main",
                                                 load_id=plan.load_id, loaded_at=plan.started_at)

    t = time.perf_counter()
    reports = asyncio.run(chunk())
    times["fetch + flatten + Arrow build + Parquet write (one chunk)"] = time.perf_counter() - t
    t = time.perf_counter()
    asyncio.run(http_alone())
    times["of which HTTP: a fresh client, connect, request, parse (timed again after the chunk)"] = (
        time.perf_counter() - t
    )
    t = time.perf_counter()
    with load:
        summary = pipeline.commit_load(load, plan, settings, [pipeline.land_skipped(load.land, plan), *reports])
    times["commit: DuckDB merge, views, publishing"] = time.perf_counter() - t
    return {"steps": times, "status": summary.status, "module_import_to_end": time.perf_counter() - _T0}
