"""A Dask load into object storage: 2 worker processes land their parts on the S3 server (moto), the flow commits.

The workers get the landing as a URL in their task's `LoadTarget` and the credentials from their own
environment; the result equals a single-process load into a local folder.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flows.pipeline import run_load
from flows.settings import LoadSettings
from tests.conftest import CANARY_TOKEN
from tests.dask_support import current_tables, serve_counting
from tests.object_store_support import S3Server, database_tables, parquet_tables, s3
from tests.test_dask_load import simulated
from warehouse import landing, objstore, views

pytestmark = pytest.mark.prefect
__all__ = ["s3"]


def run_dask_flow(base_url: str, org_id: str, url: str, ids: list[str], **settings: Any) -> Any:
    from flows.prefect_flow import load_sessions

    return asyncio.run(load_sessions(session_ids=ids, org_id=org_id, base_url=base_url, out_dir=url,
                                     return_state=True, **settings))


def test_two_dask_workers_land_on_s3_what_a_single_process_lands_locally(
    prefect_harness: None, token_env: None, s3: S3Server, tmp_path: Path
) -> None:
    state = simulated(40, latency_ms=5)
    state.dataset.add_session("bad", status="passed")
    state.dataset.set_payload("bad", [1, 2, 3])
    ids = [*state.dataset.session_ids, "bad", "unknown-session"]
    url, database = s3.prefix(), tmp_path / "db" / "piper.duckdb"
    with serve_counting(state) as (base_url, _):
        single = run_load(ids, LoadSettings(org_id=state.dataset.org_id, base_url=base_url,
                                            out_dir=tmp_path / "single", chunk_size=4), CANARY_TOKEN)
        flow = run_dask_flow(base_url, state.dataset.org_id, url, ids, chunk_size=4, sessions_per_task=8,
                             dask_workers=2, format="both", database=str(database))
    assert single.status == "partial" and flow.is_failed(), "the rejected payload fails both loads alike"
    assert database_tables(database) == current_tables(tmp_path / "single")
    assert parquet_tables(f"{url}/parquet") == parquet_tables(tmp_path / "single" / "parquet")
    landed = objstore.ObjectPath(f"{url}/parquet/fetch_log").names()
    tasks = {name.split(".")[1].split("-")[1] for name in landed if ".task-" in name}
    assert len(tasks) == 6, "42 sessions in tasks of 8 at most, each landed by a worker on the store"


def test_a_killed_worker_leaves_no_object_a_reader_picks_up_and_the_rerun_converges(
    prefect_harness: None, token_env: None, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client, LocalCluster

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the load state's folder (no --database)
    state = simulated(48, latency_ms=100)
    ids = state.dataset.session_ids
    url = s3.prefix()
    root = objstore.ObjectPath(f"{url}/parquet")
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
            serve_counting(state) as (base_url, _), Client(cluster.scheduler_address) as client:
        pids: dict[str, int] = client.run(os.getpid)
        result: dict[str, Any] = {}
        load = threading.Thread(target=lambda: result.update(state=run_dask_flow(
            base_url, state.dataset.org_id, url, ids, concurrency=4, chunk_size=2, sessions_per_task=12,
            dask_address=cluster.scheduler_address)))
        load.start()
        deadline = time.monotonic() + 120
        while not (root / "fetch_log").names() and time.monotonic() < deadline:  # a chunk has landed
            time.sleep(0.02)
        os.kill(next(iter(pids.values())), signal.SIGKILL)  # mid-load
        seen_during = views.read_layout(root)
        load.join(timeout=300)
        assert not load.is_alive() and "state" in result
    assert seen_during.pending_loads == frozenset(), "before the commit, a reader picks up no object of the load"
    current = parquet_tables(root.as_posix())
    outcomes = {row[0]: row[1] for row in _log(root)}
    assert sorted(outcomes) == sorted(ids), "every requested session has exactly one outcome"
    assert set(outcomes.values()) <= {"loaded", "failed"}
    assert len(current["runs"]) == sum(1 for outcome in outcomes.values() if outcome == "loaded")
    complete = {name for name in (root / "fetch_log").names()}
    for table in landing.DATA_TABLES:
        assert {name for name in (root / table).names()} <= complete, f"a {table} part without its chunk"
    if len(current["runs"]) < len(ids):
        settings = LoadSettings.resolve({"org_id": state.dataset.org_id, "base_url": base_url, "out_dir": url}, {})
        rerun = run_load(ids, settings, CANARY_TOKEN)
        assert rerun.ok, rerun.line()
    assert len(parquet_tables(root.as_posix())["runs"]) == len(ids), "the load or its rerun converged"


def _log(root: objstore.ObjectPath) -> list[tuple[Any, ...]]:
    con = views.open_current_state(root)
    try:
        return con.execute("SELECT session_id, outcome FROM fetch_log").fetchall()
    finally:
        con.close()
