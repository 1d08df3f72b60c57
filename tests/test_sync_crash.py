"""A sync killed at any stage (kill -9 style) loses no session, moves no watermark, and the next sync converges."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli, SimulatedPiper, query
from tests.sync_support import org, sync_args
from tests.test_crash_recovery import content, run_cli_process
from tests.test_parquet_invariant import assert_parquet_equals_duckdb
from warehouse.crash import CRASH_EXIT_STATUS

__all__ = ["org"]

SESSIONS = "SELECT * EXCLUDE (_load_id, _loaded_at) FROM sessions ORDER BY session_id"
WATERMARK = "SELECT watermark_after FROM sync_state ORDER BY started_at DESC LIMIT 1"


@pytest.mark.parametrize("crash_at", ["listed", "fetching:7", "fetched", "parquet-written:3", "merge-uncommitted",
                                      "merged"])
def test_a_killed_sync_converges_on_the_next_one(org: SimulatedPiper, tmp_path: Path, cli: Cli, crash_at: str) -> None:
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    for out_dir in (reference, crashed):
        assert cli(*sync_args(org, out_dir, "--chunk-size", "8")).code == 0
    watermark_before = query(crashed, WATERMARK)[0][0]
    dataset = org.dataset
    for index in range(12):
        dataset.add_session(f"web-crash-{index}")
    dataset.rerun(dataset.session_ids[0])
    dataset.complete_pending()

    assert cli(*sync_args(org, reference, "--chunk-size", "8")).code == 0
    killed = run_cli_process(sync_args(org, crashed, "--chunk-size", "8"), crash_at=crash_at)
    assert killed.returncode == CRASH_EXIT_STATUS, killed.stderr
    committed = query(crashed, "SELECT count(*) FROM sync_state")[0][0]
    if committed == 1:
        assert query(crashed, WATERMARK)[0][0] == watermark_before, "no commit, no move"

    rerun = run_cli_process(sync_args(org, crashed, "--chunk-size", "8"))
    assert rerun.returncode == 0, rerun.stderr
    assert content(crashed) == content(reference)
    assert query(crashed, SESSIONS) == query(reference, SESSIONS)
    assert query(crashed, WATERMARK) == query(reference, WATERMARK)
    assert query(crashed, "SELECT count(*) FROM runs WHERE session_id LIKE 'web-crash-%'")[0][0] == 12
    assert_parquet_equals_duckdb(crashed)
