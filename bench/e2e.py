"""End-to-end legs: the same sessions, fetched over loopback and landed, by piper-etl and by its peers.

* `piper_local`: `flows.pipeline.run_load`, the CLI's `--engine local` path (optionally with a different
  httpx transport injected, to measure a proposed change without editing the product).
* `piper_flow`: the Prefect flow `load_sessions` against a running Prefect server (`PREFECT_API_URL`).
* `naive`: the script a user writes first: sequential httpx, `json`, pandas `json_normalize`, `to_parquet`.
* `dlt_load`: a `@dlt.resource` fetching with `concurrency` threads into DuckDB or Parquet files, with dlt's
  nested-table normalisation (runs, runs__turn_results, runs__turn_results__criteria_results).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from pathlib import Path
from typing import Any

from bench.payloads import TOKEN
from connector.urls import by_session_url


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


GUARD_EXIT = 86  # exit status of a leg stopped by its RSS guard


class RssSampler:
    """Samples this process's RSS every 50 ms; tells the peak before and after `mark()`.

    On a shared machine a runaway load must not take everyone's memory: past `guard_mb` the process
    exits at once with status `GUARD_EXIT` (the parent still reads the peak from `wait4`).
    """

    def __init__(self, guard_mb: float | None = None) -> None:
        self.guard_mb = guard_mb
        self.peak_before = 0.0
        self.peak_after = 0.0
        self.marked = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def _sample(self) -> None:
        rss = _rss_mb()
        if self.guard_mb is not None and rss > self.guard_mb:
            os._exit(GUARD_EXIT)
        if self.marked:
            self.peak_after = max(self.peak_after, rss)
        else:
            self.peak_before = max(self.peak_before, rss)

    def mark(self) -> None:
        self._sample()
        self.marked = True

    def stop(self) -> dict[str, float]:
        self._sample()
        self._stop.set()
        self._thread.join()
        return {"rss_peak_while_fetching_mb": self.peak_before, "rss_peak_after_last_fetch_mb": self.peak_after}


class PhaseMarks:
    """When the load's plan and its commit step (`commit_load`) begin and end, in seconds from `begin()`.

    Wraps the two functions in `flows.pipeline`, which `run_load` and the flow both call, so the same
    marks split the wall time of either engine: before the plan, fetching, the merge, after it.
    `prefect=True` also marks the first call of each step in `PREFECT_STEPS` (the flow's start and end).
    """

    def __init__(self, *, prefect: bool = False) -> None:
        from flows import pipeline

        self.started = time.perf_counter()
        self.marks: dict[str, float] = {}
        for name, label in (("plan_load", "plan_load"), ("commit_load", "finish_load")):
            self._wrap(pipeline, name, label)
        if prefect:
            import importlib

            for label, module, path in PREFECT_STEPS:
                *owner_path, attribute = path.split(".")
                owner: Any = importlib.import_module(module)
                for part in owner_path:
                    owner = getattr(owner, part, None)
                if owner is not None and hasattr(owner, attribute):  # Prefect internals may move: then unmarked
                    self._wrap(owner, attribute, label)

    def begin(self) -> None:
        self.started = time.perf_counter()

    def _wrap(self, owner: Any, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)
        marks, start, end = self.marks, f"{label}_start", f"{label}_end"

        if asyncio.iscoroutinefunction(original):
            async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
                marks.setdefault(start, time.perf_counter() - self.started)
                try:
                    return await original(*args, **kwargs)
                finally:
                    marks.setdefault(end, time.perf_counter() - self.started)

            setattr(owner, attribute, functools.wraps(original)(wrapped_async))
            return

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            marks.setdefault(start, time.perf_counter() - self.started)
            try:
                return original(*args, **kwargs)
            finally:
                marks.setdefault(end, time.perf_counter() - self.started)

        setattr(owner, attribute, functools.wraps(original)(wrapped))


PREFECT_STEPS = (
    # (label, module, attribute path): the first call of each is marked; the report names them
    ("create_flow_run", "prefect.flow_engine", "AsyncFlowRunEngine.create_flow_run"),
    ("resolve_parameters", "prefect.flow_engine", "AsyncFlowRunEngine._resolve_parameters"),
    ("validate_parameters", "prefect.flows", "Flow.validate_parameters"),
    ("set_state", "prefect.flow_engine", "AsyncFlowRunEngine.set_state"),
    ("resolve_token", "flows.prefect_flow", "resolve_token"),  # the first call in the flow's body
    ("verdicts_read", "warehouse.publish", "_verdicts_from_writer"),  # in the commit, alongside the copy
    ("artifact_create", "flows.prefect_flow", "acreate_markdown_artifact"),
    ("handle_success", "prefect.flow_engine", "AsyncFlowRunEngine.handle_success"),
)


def _settings(params: dict[str, Any]) -> Any:
    from flows.settings import LoadSettings

    return LoadSettings(
        org_id=params["org_id"],
        base_url=params["base_url"],
        out_dir=Path(params["out_dir"]),
        concurrency=params["concurrency"],
        chunk_size=params.get("chunk_size", 500),
        format=params.get("format", "both"),
    )


def piper_local(params: dict[str, Any]) -> dict[str, Any]:
    """`run_load` (the CLI's local path) over `session_ids`; what-ifs: another transport, a DuckDB memory limit."""
    from flows.pipeline import run_load

    ids: list[str] = params["session_ids"]
    settings = _settings(params)
    transport = _transport(params)
    if params.get("duckdb_memory_limit"):
        _limit_duckdb_memory(params["duckdb_memory_limit"], Path(params["out_dir"]) / "duckdb-spill")
    sampler = RssSampler(params.get("rss_guard_mb")) if params.get("sample_rss") else None
    seen = 0
    last_fetch = 0.0

    def on_session(outcome: str) -> None:
        nonlocal seen, last_fetch
        seen += 1
        if seen == len(ids):
            last_fetch = time.perf_counter()
            if sampler is not None:
                sampler.mark()

    rss_start = _rss_mb()
    profiler = None
    if params.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    phases = PhaseMarks()
    started, cpu = time.perf_counter(), time.process_time()
    phases.begin()
    try:
        summary = run_load(ids, settings, TOKEN, transport=transport, on_session=on_session)
    except Exception as exc:
        if sampler is None:
            raise
        # a memory leg reports how far the load got and how much memory it held when it failed
        return {"error": f"failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}",
                "failed_after_seconds": time.perf_counter() - started, **sampler.stop()}
    ended, cpu = time.perf_counter(), time.process_time() - cpu
    if profiler is not None:
        profiler.disable()
    result: dict[str, Any] = {
        "seconds": ended - started,
        "cpu_seconds": cpu,
        "phases": phases.marks,
        # after the last session's response: the last chunk's Arrow build and Parquet write, then the merge
        "tail_seconds": ended - last_fetch if last_fetch else None,
        "status": summary.status,
        "outcomes": dict(summary.outcomes),
        "rows": dict(summary.rows),
        "rss_before_load_mb": rss_start,
    }
    if sampler is not None:
        result.update(sampler.stop())
    if profiler is not None:
        result.update(_profile_text(profiler, params.get("top", 25)))
    return result


def _transport(params: dict[str, Any]) -> Any:
    """None (httpx's own pool, as shipped) or, for `transport: aiohttp`, httpx-aiohttp's pool sized to C."""
    if params.get("transport") != "aiohttp":
        return None
    import httpx
    from httpx_aiohttp import AiohttpTransport

    concurrency = params["concurrency"]
    return AiohttpTransport(limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))


def _inject_transport(params: dict[str, Any]) -> None:
    """What-if for the flow: make `flows.pipeline.make_client` (which each flow task calls) use `_transport`."""
    if params.get("transport") != "aiohttp":
        return
    from flows import pipeline

    original = pipeline.make_client

    def make_client(settings: Any, token: str, transport: Any = None) -> Any:
        return original(settings, token, transport or _transport(params))

    pipeline.make_client = make_client  # type: ignore[assignment]


def _limit_duckdb_memory(limit: str, spill: Path) -> None:
    """What-if for the merge: every DuckDB connection the warehouse opens gets a memory limit and a spill folder."""
    from warehouse import store

    original = store.connect

    def connect(path: Path, *args: Any, **kwargs: Any) -> Any:
        con = original(path, *args, **kwargs)
        spill.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET memory_limit = '{limit}'")
        con.execute(f"SET temp_directory = '{spill}'")
        con.execute("SET preserve_insertion_order = false")
        return con

    store.connect = connect  # type: ignore[assignment]


def _profile_text(profiler: Any, top: int) -> dict[str, str]:
    import io
    import pstats

    out = {}
    for sort in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(sort).print_stats(top)
        out[f"profile_{sort}"] = text.getvalue()
    return out


def piper_flow(params: dict[str, Any]) -> dict[str, Any]:
    """The Prefect flow `load_sessions`; the import of Prefect is timed apart from the run."""
    started = time.perf_counter()
    from flows.prefect_flow import LoadFailed, load_sessions

    import_seconds = time.perf_counter() - started
    _inject_transport(params)
    os.environ["PIPER_API_TOKEN"] = TOKEN
    profiler = None
    if params.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    phases = PhaseMarks(prefect=True)
    wall, cpu = time.perf_counter(), time.process_time()
    phases.begin()
    try:
        summary = asyncio.run(
            load_sessions(
                session_ids=params["session_ids"],
                org_id=params["org_id"],
                base_url=params["base_url"],
                out_dir=params["out_dir"],
                concurrency=params["concurrency"],
                chunk_size=params.get("chunk_size", 500),
                sessions_per_task=params.get("sessions_per_task", 5000),
                format=params.get("format", "both"),
            )
        )
    except LoadFailed as exc:
        summary = exc.summary
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result: dict[str, Any] = {
        "seconds": wall,
        "cpu_seconds": cpu,
        "phases": phases.marks,
        "prefect_import_seconds": import_seconds,
        "status": summary.status,
        "outcomes": dict(summary.outcomes),
        "rows": dict(summary.rows),
    }
    if profiler is not None:
        profiler.disable()
        result.update(_profile_text(profiler, params.get("top", 25)))
    return result


def naive(params: dict[str, Any]) -> dict[str, Any]:
    """Sequential httpx, `response.json()`, pandas `json_normalize`, one Parquet file per table."""
    import httpx
    import pandas as pd

    out = Path(params["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    started, cpu = time.perf_counter(), time.process_time()
    runs: list[dict[str, Any]] = []
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
        for session_id in params["session_ids"]:
            response = http.get(by_session_url(params["base_url"], params["org_id"], session_id))
            response.raise_for_status()
            run = response.json()
            run["session_id"] = session_id
            runs.append(run)
    fetched = time.perf_counter()
    run_rows = pd.json_normalize(runs).drop(columns=["turn_results"])
    turns = pd.json_normalize(runs, record_path="turn_results", meta=["id", "session_id"], meta_prefix="run_")
    turns = turns.drop(columns=["criteria_results"])
    criteria = pd.json_normalize(
        runs,
        record_path=["turn_results", "criteria_results"],
        meta=["id", "session_id", ["turn_results", "id"], ["turn_results", "turn_index"]],
        meta_prefix="run_",
    )
    for name, frame in (("runs", run_rows), ("turns", turns), ("criteria_results", criteria)):
        frame.to_parquet(out / f"{name}.parquet")
    ended, cpu = time.perf_counter(), time.process_time() - cpu
    return {
        "seconds": ended - started,
        "cpu_seconds": cpu,
        "fetch_seconds": fetched - started,
        "rows": {"runs": len(run_rows), "turns": len(turns), "criteria_results": len(criteria)},
    }


def dlt_load(params: dict[str, Any]) -> dict[str, Any]:
    """A `@dlt.resource` fetching with a pool of `concurrency` threads, into dlt's DuckDB or Parquet files."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    import dlt
    import requests
    from requests.adapters import HTTPAdapter

    out = Path(params["out_dir"])
    concurrency: int = params["concurrency"]
    base_url, org_id = params["base_url"], params["org_id"]
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=concurrency))
    session.headers["Authorization"] = f"Bearer {TOKEN}"

    def fetch(session_id: str) -> dict[str, Any]:
        response = session.get(by_session_url(base_url, org_id, session_id), timeout=60)
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        run["session_id"] = session_id
        return run

    @dlt.resource(name="runs", primary_key="id")
    def runs() -> Any:
        with ThreadPoolExecutor(concurrency) as pool:
            fetched = pool.map(fetch, params["session_ids"])
            while page := list(islice(fetched, 100)):
                yield page

    if params["destination"] == "duckdb":
        destination: Any = dlt.destinations.duckdb(str(out / "dlt.duckdb"))
        run_kwargs: dict[str, Any] = {}
    else:
        destination = dlt.destinations.filesystem(bucket_url=(out / "files").as_uri())
        run_kwargs = {"loader_file_format": "parquet"}
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{params['destination']}",
        destination=destination,
        dataset_name="piper",
        pipelines_dir=str(out / "pipelines"),
    )
    wall, cpu = time.perf_counter(), time.process_time()
    pipeline.run(runs(), **run_kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    trace = pipeline.last_trace
    steps = {
        step.step: (step.finished_at - step.started_at).total_seconds()
        for step in trace.steps
        if step.finished_at is not None and step.started_at is not None
    }
    row_counts = dict(trace.last_normalize_info.row_counts) if trace.last_normalize_info else {}
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "steps": steps,
        "rows": {
            "runs": row_counts.get("runs"),
            "turns": row_counts.get("runs__turn_results"),
            "criteria_results": row_counts.get("runs__turn_results__criteria_results"),
        },
    }
