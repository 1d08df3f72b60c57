"""`sync --with-agent-usage`: what a sync queues and lands for the agent's usage, locally and in the flows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from connector.fake_api._views import session_events
from flows.settings import SyncOptions
from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, query
from tests.sync_support import org, sync, sync_args

__all__ = ["org"]  # the fixture


def agent_runs_served(piper: SimulatedPiper) -> int:
    return sum(len(orjson.loads(session_events(piper.dataset, sid) or b"{}")["runs"])
               for sid in piper.dataset.session_ids)


def test_a_sync_with_the_flag_fills_in_the_agent_usage_of_what_it_stored_before(
    org: SimulatedPiper, out_dir: Path
) -> None:
    org.dataset.complete_pending()
    first = sync(org, out_dir)
    assert first.ok and query(out_dir, "SELECT count(*) FROM agent_usage") == [(0,)]
    second = sync(org, out_dir, with_agent_usage=True, options=SyncOptions(full_scan=True))
    with_runs = len(org.dataset.session_ids)
    assert second.plan.reasons["without agent usage"] == with_runs, "every stored final run lacked its agent usage"
    assert f"{with_runs} without agent usage" in second.line()
    assert second.load.outcomes["loaded"] == with_runs
    assert query(out_dir, "SELECT count(DISTINCT session_id), count(agent_run_id) FROM agent_usage") == [
        (with_runs, agent_runs_served(org))]
    third = sync(org, out_dir, with_agent_usage=True, options=SyncOptions(full_scan=True))
    assert len(third.plan.queued) == 0 and "without agent usage" not in third.line()


def test_a_rerun_found_by_a_sync_brings_its_new_agent_run(org: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    org.dataset.complete_pending()
    assert cli(*sync_args(org, out_dir, "--with-agent-usage")).code == 0
    session_id = org.dataset.session_ids[0]
    before = query(out_dir, "SELECT count(*) FROM agent_usage WHERE session_id = ?", [session_id])[0][0]
    org.dataset.rerun(session_id, status="passed")
    result = cli(*sync_args(org, out_dir, "--with-agent-usage"))
    assert result.code == 0, result.stderr
    assert query(out_dir, "SELECT count(*) FROM agent_usage WHERE session_id = ?", [session_id]) == [(before + 1,)]
    assert query(out_dir, "SELECT count(*) FROM agent_usage") == [(agent_runs_served(org),)]


# The flows, in one Prefect test server: parameters reach the same code as the flags.

@pytest.mark.prefect
def test_both_flows_take_with_agent_usage(
    prefect_harness: None, org: SimulatedPiper, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.prefect_flow import load_sessions, sync_sessions

    monkeypatch.setenv("PIPER_API_TOKEN", CANARY_TOKEN)
    org.dataset.complete_pending()
    ids = org.dataset.session_ids[:6]
    common = {"org_id": org.org_id, "base_url": org.base_url, "out_dir": str(out_dir), "with_agent_usage": True}
    state = asyncio.run(load_sessions(session_ids=ids, sessions_per_task=4, return_state=True, **common))
    assert state.is_completed()
    assert query(out_dir, "SELECT count(DISTINCT session_id) FROM agent_usage") == [(6,)]
    state = asyncio.run(sync_sessions(return_state=True, **common))
    assert state.is_completed()
    assert query(out_dir, "SELECT count(DISTINCT session_id), count(agent_run_id) FROM agent_usage") == [
        (len(org.dataset.session_ids), agent_runs_served(org))]
