"""The flow `load_sessions` keeps the dimensions current as the local engine does (tests/test_dimensions_load.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SimulatedPiper, flow_run_artifacts
from tests.test_dimensions_load import UNJOINED, detail_requests, land_sessions, list_requests, stores
from tests.test_flow_prefect import run_flow

pytestmark = pytest.mark.prefect


def test_the_flow_lands_the_scenarios_and_agents_of_its_runs(
    prefect_harness: None, token_env: None, piper: SimulatedPiper, out_dir: Path
) -> None:
    ids = piper.dataset.session_ids
    land_sessions(out_dir, piper, ids, "both")
    state = run_flow(piper, out_dir, ids, sessions_per_task=12)  # three fetch tasks, one scenarios task
    assert state.is_completed(), state.message
    referenced = {piper.dataset.header(sid).scenario.id for sid in ids}
    assert detail_requests(piper) == len(referenced) and list_requests(piper) == 1
    for con in stores(out_dir):
        for what, sql in UNJOINED.items():
            assert con.execute(sql).fetchone() == (0,), what
    markdown = flow_run_artifacts(state, "piper-load-summary")
    assert any(f"Scenario definitions: {len(referenced)} scenarios: {len(referenced)} fetched, 0 unchanged" in text
               for text in markdown)

    again = run_flow(piper, out_dir, ids[:5], refetch=True)
    assert again.is_completed(), again.message
    assert detail_requests(piper) == len(referenced) and list_requests(piper) == 2, "nothing moved: no detail"
