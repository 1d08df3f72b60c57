"""The sync flow with its fetch tasks on a local Dask cluster lands what a single-process sync lands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import SimulatedPiper, query
from tests.dask_support import current_tables
from tests.sync_support import org, sync
from tests.test_parquet_invariant import assert_parquet_equals_duckdb

pytestmark = pytest.mark.prefect
__all__ = ["org"]

SYNC_STATE_SAME = "SELECT status, watermark_before, watermark_after, pages_read, sessions_listed, sessions_queued, " \
                  "full_scan FROM sync_state ORDER BY started_at"
"""The sync_state columns two syncs of the same list agree on (not when they ran, nor their load)."""


def test_a_sync_on_two_dask_workers_equals_a_single_process_sync(
    prefect_harness: None, token_env: None, org: SimulatedPiper, tmp_path: Path
) -> None:
    from flows.prefect_flow import sync_sessions

    single = sync(org, tmp_path / "single", chunk_size=4)
    assert single.ok, single.line()
    state = asyncio.run(sync_sessions(org_id=org.org_id, base_url=org.base_url, out_dir=str(tmp_path / "dask"),
                                      chunk_size=4, sessions_per_task=16, dask_workers=2, return_state=True))
    assert state.is_completed(), state.message
    dask, alone = current_tables(tmp_path / "dask"), current_tables(tmp_path / "single")
    assert {table: rows for table, rows in dask.items() if table != "sync_state"} == {
        table: rows for table, rows in alone.items() if table != "sync_state"}
    assert query(tmp_path / "dask", SYNC_STATE_SAME) == query(tmp_path / "single", SYNC_STATE_SAME)
    assert query(tmp_path / "dask", "SELECT count(*) FROM runs")[0][0] == 60
    tasks = {path.name.split(".")[1][: len("task-0001")]
             for path in (tmp_path / "dask" / "parquet" / "fetch_log").glob("*.task-*.parquet")}
    assert tasks == {"task-0001", "task-0002", "task-0003", "task-0004"}, "60 sessions in tasks of 16 at most"
    assert_parquet_equals_duckdb(tmp_path / "dask")
