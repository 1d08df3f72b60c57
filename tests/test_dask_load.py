"""The load's fetch tasks on a Dask cluster of worker processes: the same tables, one API budget, a dead worker."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from connector.fake_api import FakeDataset, FakePiper
from flows.pipeline import run_load
from flows.settings import LoadSettings
from tests.conftest import CANARY_TOKEN, assert_no_canary, query
from tests.dask_support import current_tables, incomplete_files, serve_counting, warm_cluster
from tests.test_parquet_invariant import assert_parquet_equals_duckdb
from warehouse import compact, compacted

pytestmark = pytest.mark.prefect


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A local Dask cluster of 2 warmed worker processes, the token in their environment."""
    with warm_cluster(CANARY_TOKEN) as local:
        yield local


def simulated(sessions: int, latency_ms: float) -> FakePiper:
    """An org of its own: the test server never repossesses a killed worker's leased slots (an ephemeral
    Prefect server runs no repossessor), so a limit one test leaks must not be the next test's budget."""
    dataset = FakeDataset.generate(seed=23, sessions=sessions, payload_kb=2.0)
    dataset.org_id = str(uuid.uuid4())
    return FakePiper(dataset=dataset, token=CANARY_TOKEN, latency_ms=latency_ms, retry_after="0")


def streams(fetch_log: Path) -> set[str]:
    """The fetch tasks that have landed a chunk so far."""
    return {path.name.split(".")[1][: len("task-0001")] for path in fetch_log.glob("*.task-*.parquet")}


def session_ids(part: Path) -> list[str]:
    return [str(s) for s in pq.read_table(part, columns=["session_id"]).column(0).to_pylist()]


def run_dask_flow(base_url: str, org_id: str, out_dir: Path, ids: list[str], **settings: Any) -> Any:
    from flows.prefect_flow import load_sessions

    return asyncio.run(load_sessions(session_ids=ids, org_id=org_id, base_url=base_url, out_dir=str(out_dir),
                                     return_state=True, **settings))


def test_a_local_cluster_of_two_workers_lands_what_a_single_process_load_lands(
    prefect_harness: None, token_env: None, tmp_path: Path
) -> None:
    state = simulated(40, latency_ms=5)
    state.dataset.add_session("bad", status="passed")
    state.dataset.set_payload("bad", [1, 2, 3])
    ids = [*state.dataset.session_ids, "bad", "unknown-session"]
    with serve_counting(state) as (base_url, _):
        single = run_load(ids, LoadSettings(org_id=state.dataset.org_id, base_url=base_url,
                                            out_dir=tmp_path / "single", chunk_size=4), CANARY_TOKEN)
        flow = run_dask_flow(base_url, state.dataset.org_id, tmp_path / "dask", ids,
                             chunk_size=4, sessions_per_task=8, dask_workers=2)
    assert single.status == "partial" and flow.is_failed(), "the rejected payload fails both loads alike"
    assert current_tables(tmp_path / "dask") == current_tables(tmp_path / "single")
    assert query(tmp_path / "dask", "SELECT count(*) FROM runs")[0][0] == len(state.dataset.session_ids) - 1
    assert_parquet_equals_duckdb(tmp_path / "dask")
    tasks = {path.name.split(".")[1].split("-")[1] for path in (tmp_path / "dask" / "parquet" / "fetch_log").glob(
        "*.task-*.parquet")}
    assert len(tasks) == 6, "42 sessions in tasks of 8 at most"
    assert_no_canary(repr(flow), folder=tmp_path / "dask")


def test_the_api_never_sees_more_requests_in_flight_than_the_concurrency(
    prefect_harness: None, token_env: None, cluster: Any, tmp_path: Path
) -> None:
    state = simulated(48, latency_ms=150)
    ids = state.dataset.session_ids
    with serve_counting(state) as (base_url, in_flight):
        # 3 slots: each of the 2 workers' tasks (12 sessions, about 1.8 s of requests) holds 1 (3 // 2), and
        # so does the scenario refresh after them
        flow = run_dask_flow(base_url, state.dataset.org_id, tmp_path / "three", ids[:24], concurrency=3,
                             chunk_size=4, sessions_per_task=12, dask_address=cluster.scheduler_address)
        assert flow.is_completed(), flow.message
        assert 1 < in_flight.most <= 3, f"the tasks overlapped, within the budget: {in_flight.most}"
        # 1 slot, and 2 workers whose tasks would hold 1 each: only the global limit keeps them to 1 in all
        in_flight.most = 0
        flow = run_dask_flow(base_url, state.dataset.org_id, tmp_path / "one", ids[24:], concurrency=1,
                             chunk_size=4, sessions_per_task=4, dask_address=cluster.scheduler_address)
        assert flow.is_completed(), flow.message
        assert in_flight.most == 1, in_flight.most
    assert query(tmp_path / "three", "SELECT count(*) FROM runs")[0][0] == 24
    assert query(tmp_path / "one", "SELECT count(*) FROM runs")[0][0] == 24


def test_a_killed_worker_leaves_every_session_accounted_for_and_no_partial_file(
    prefect_harness: None, token_env: None, cluster: Any, tmp_path: Path
) -> None:
    from distributed import Client

    state = simulated(64, latency_ms=100)
    out_dir = tmp_path / "out"
    ids = state.dataset.session_ids
    compact.change_settings(out_dir, compacted.Settings(auto=False))  # the part names stay for the checks below
    with serve_counting(state) as (base_url, _), Client(cluster.scheduler_address) as client:
        pids: dict[str, int] = client.run(os.getpid)
        result: dict[str, Any] = {}
        load = threading.Thread(target=lambda: result.update(state=run_dask_flow(
            base_url, state.dataset.org_id, out_dir, ids, concurrency=4, chunk_size=2, sessions_per_task=16,
            dask_address=cluster.scheduler_address)))
        load.start()
        landed = out_dir / "parquet" / "fetch_log"
        deadline = time.monotonic() + 120
        while len(streams(landed)) < 2 and time.monotonic() < deadline:  # both workers' tasks have landed a chunk
            time.sleep(0.01)
        os.kill(next(iter(pids.values())), signal.SIGKILL)  # mid-load: a chunk has landed, most have not
        load.join(timeout=300)
        assert not load.is_alive() and "state" in result
        outcomes = dict(query(out_dir, "SELECT session_id, outcome FROM fetch_log"))
        assert sorted(outcomes) == sorted(ids), "every requested session has exactly one outcome"
        assert query(out_dir, "SELECT count(*) FROM fetch_log")[0][0] == len(ids), "and only one"
        assert set(outcomes.values()) <= {"loaded", "failed"}
        loaded = query(out_dir, "SELECT count(*) FROM runs")[0][0]
        assert loaded == sum(1 for outcome in outcomes.values() if outcome == "loaded")
        assert incomplete_files(out_dir / "parquet") == []
        assert_parquet_equals_duckdb(out_dir)
        if loaded < len(ids):
            rerun = run_load(ids, LoadSettings(org_id=state.dataset.org_id, base_url=base_url, out_dir=out_dir),
                             CANARY_TOKEN)
            assert rerun.ok, rerun.line()
        assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == len(ids), "the load or its rerun converged"
        for rerun_part in landed.glob("*.task-*-r2-*.parquet"):  # a task run again kept what it had landed
            first = rerun_part.name.split(".")[1].split("-r2-")[0]
            kept = [p for p in landed.glob(f"*.{first}-*.parquet") if "-r2-" not in p.name]
            assert all(state.session_hits[s] == 1 for part in kept for s in session_ids(part)), rerun_part.name
