"""The Prefect flow `sync_sessions`: the same sync as the CLI, a markdown artifact, Failed when a session failed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, SimulatedPiper, assert_no_canary, flow_run_artifacts, query
from tests.sync_support import Requests, org, sync_args, unfinished

__all__ = ["org"]
pytestmark = pytest.mark.prefect


def run_sync_flow(piper: SimulatedPiper, out_dir: Path, **kwargs: Any) -> Any:
    from flows.prefect_flow import sync_sessions

    return asyncio.run(sync_sessions(org_id=piper.org_id, base_url=piper.base_url, out_dir=str(out_dir),
                                     return_state=True, **kwargs))


def test_the_flow_syncs_incrementally_and_publishes_a_summary(
    prefect_harness: None, token_env: None, org: SimulatedPiper, out_dir: Path
) -> None:
    requests = Requests(org)
    state = run_sync_flow(org, out_dir, chunk_size=8, sessions_per_task=25)
    assert state.is_completed(), state.message
    fetched, pages = requests.take()
    assert fetched == {s: 1 for s in org.dataset.session_ids} and pages == 1
    assert query(out_dir, "SELECT count(*), count(DISTINCT _load_id) FROM runs") == [(60, 1)]
    assert query(out_dir, "SELECT sessions_queued, full_scan, status FROM sync_state") == [(60, True, "succeeded")]
    markdown = flow_run_artifacts(state, "piper-sync-summary")
    assert markdown and "| sessions listed | 68 |" in markdown[0] and "| queued: new | 60 |" in markdown[0]
    assert "Verdicts and judge cost" in markdown[0]

    org.dataset.add_session("web-flow-new")
    again = run_sync_flow(org, out_dir, full_scan=True)
    assert again.is_completed(), again.message
    fetched, _ = requests.take()
    assert set(fetched) == {"web-flow-new", *unfinished(org.dataset)}
    assert_no_canary(*flow_run_artifacts(again, "piper-sync-summary"), folder=out_dir)


def test_the_flow_ends_failed_after_committing_when_a_session_failed(
    prefect_harness: None, token_env: None, org: SimulatedPiper, out_dir: Path
) -> None:
    bad = org.dataset.session_ids[3]
    org.state.script(bad, "500", "500")
    state = run_sync_flow(org, out_dir, max_retries=1)
    assert state.is_failed() and "1 failed" in (state.message or "")
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 59, "the rest was committed"
    assert query(out_dir, "SELECT status FROM sync_state")[0][0] == "partial"


def test_a_bad_bound_names_the_flow_parameter(prefect_harness: None, token_env: None, org: SimulatedPiper,
                                              out_dir: Path) -> None:
    state = run_sync_flow(org, out_dir, since="soon")
    assert state.is_failed() and "since 'soon' is not an ISO 8601" in (state.message or "")
    assert not out_dir.exists()


def test_sync_with_engine_prefect_runs_the_flow_and_exits_as_the_local_engine(
    prefect_harness: None, org: SimulatedPiper, cli: Cli, out_dir: Path
) -> None:
    done = cli(*sync_args(org, out_dir)[:-2], "--engine", "prefect")
    assert done.code == 0, done.stderr
    assert "queued 60: 60 new" in done.stdout and "load " in done.stdout
    bad = org.dataset.session_ids[0]
    org.dataset.rerun(bad)
    org.state.script(bad, "500", "500")
    failed = cli(*sync_args(org, out_dir)[:-2], "--engine", "prefect", "--max-retries", "1")
    assert failed.code == 1 and f"{bad!r}: HTTP 500" in failed.stderr
    assert query(out_dir, "SELECT status FROM sync_state ORDER BY started_at") == [("succeeded",), ("partial",)]
