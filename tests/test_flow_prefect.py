"""The Prefect flow `load_sessions`: same result as the CLI, an artifact, and Failed when a session failed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SimulatedPiper, assert_no_canary, flow_run_artifacts, query
from tests.test_merge_while_fetching import inserted_before_each_commit
from tests.test_parquet_invariant import assert_parquet_equals_duckdb

# Prefect's own client leaves sockets to its temporary test server for the garbage collector: the suite
# ignores those warnings (pyproject.toml), and tests/test_sockets_closed.py checks our client's sockets.
pytestmark = pytest.mark.prefect


def run_flow(piper: SimulatedPiper, out_dir: Path, session_ids: list[str], **kwargs: Any) -> Any:
    from flows.prefect_flow import load_sessions

    return asyncio.run(
        load_sessions(
            session_ids=session_ids,
            org_id=piper.org_id,
            base_url=piper.base_url,
            out_dir=str(out_dir),
            return_state=True,
            **kwargs,
        )
    )


def test_flow_loads_in_chunks_and_publishes_a_summary(
    prefect_harness: None, token_env: None, piper: SimulatedPiper, out_dir: Path
) -> None:
    ids = [*piper.dataset.session_ids, "unknown-session"]
    state = run_flow(piper, out_dir, ids, chunk_size=8, sessions_per_task=12)
    assert state.is_completed(), state.message
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == len(piper.dataset.session_ids)
    assert query(out_dir, "SELECT count(*) FROM fetch_log")[0][0] == len(ids)
    assert query(out_dir, "SELECT count(DISTINCT _load_id) FROM runs")[0][0] == 1
    # 3 tasks of 12, 12 and 7 sessions, landed in chunks of 8, each task's last chunk split in two
    # (8, 3, 1 / 8, 3, 1 / 5, 2): 8 parts, none overwriting another, and the scenario definitions' part
    assert len(list((out_dir / "parquet" / "fetch_log").glob("*.task-*.parquet"))) == 8
    assert len(list((out_dir / "parquet" / "fetch_log").glob("*.parquet"))) == 9
    markdown = flow_run_artifacts(state, "piper-load-summary")
    assert markdown and "| not_found | 1 |" in markdown[0]
    assert "Verdicts and judge cost" in markdown[0] and "| scenario | runs | run pass |" in markdown[0]
    assert_no_canary(*markdown, repr(state.state_details), folder=out_dir)


def test_flow_tasks_land_chunks_that_the_load_transaction_inserts_before_the_flow_commits(
    prefect_harness: None, token_env: None, piper: SimulatedPiper, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    added = inserted_before_each_commit(monkeypatch)
    state = run_flow(piper, out_dir, piper.dataset.session_ids[:24], chunk_size=4, sessions_per_task=12)
    assert state.is_completed(), state.message
    assert len(added) == 1 and added[0] >= 3 * 4, "both fetch tasks inserted their chunks before the commit"
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 24
    assert_parquet_equals_duckdb(out_dir)


def test_flow_ends_failed_after_committing_when_a_session_failed(
    prefect_harness: None, token_env: None, piper: SimulatedPiper, out_dir: Path
) -> None:
    bad, *good = piper.dataset.session_ids[:4]
    piper.state.script(bad, "500", "500")
    state = run_flow(piper, out_dir, [bad, *good], max_retries=1)
    assert state.is_failed()
    assert "1 failed" in (state.message or "")
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 3, "the rest was committed"
    assert query(out_dir, "SELECT status FROM loads")[0][0] == "partial"


def test_flow_refused_token_records_every_later_task_as_failed(
    prefect_harness: None, token_env: None, piper: SimulatedPiper, out_dir: Path
) -> None:
    ids = piper.dataset.session_ids[:12]
    piper.state.script(ids[2], "401")
    state = run_flow(piper, out_dir, ids, concurrency=1, chunk_size=2, sessions_per_task=4)
    assert state.is_failed() and "PIPER_API_TOKEN" in (state.message or "")
    log = dict(query(out_dir, "SELECT session_id, outcome FROM fetch_log"))
    assert [log[s] for s in ids] == ["loaded"] * 2 + ["failed"] * 10
    assert [r.session_id for r in piper.state.requests] == ids[:3], "nothing sent after the refusal"
    assert query(out_dir, "SELECT status, sessions_failed FROM loads") == [("aborted", 10)]
    assert_no_canary(state.message or "", folder=out_dir)


def test_flow_parameters_and_logs_never_hold_the_token(prefect_harness: None, token_env: None, piper: SimulatedPiper,
                                              out_dir: Path) -> None:
    from prefect.client.orchestration import get_client

    state = run_flow(piper, out_dir, piper.dataset.session_ids[:2])
    assert state.is_completed()

    async def parameters() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            tasks = await client.read_task_runs()
            logs = await client.read_logs()
        return [repr(r.parameters) for r in runs] + [repr(t.task_inputs) for t in tasks] + [log.message for log in logs]

    assert_no_canary(*asyncio.run(parameters()))
