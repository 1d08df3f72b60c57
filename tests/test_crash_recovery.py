"""A load killed at any stage leaves no partial file, a consistent database, and the next run converges."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, assert_no_canary, load_args, query
from tests.test_parquet_invariant import assert_parquet_equals_duckdb
from warehouse.crash import CRASH_ENV, CRASH_EXIT_STATUS

CONTENT = {
    "runs": "SELECT * EXCLUDE (_load_id, _loaded_at) FROM runs ORDER BY run_id",
    "turns": "SELECT * EXCLUDE (_load_id, _loaded_at) FROM turns ORDER BY turn_result_id",
    "criteria_results": "SELECT * EXCLUDE (_load_id, _loaded_at) FROM criteria_results ORDER BY criteria_result_id",
}


def run_cli_process(args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PIPER_ORG_ID", "PIPER_BASE_URL", "PREFECT_API_URL")}
    env["PIPER_API_TOKEN"] = CANARY_TOKEN
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def content(out_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    return {table: query(out_dir, sql) for table, sql in CONTENT.items()}


def database_state(out_dir: Path) -> tuple[int, int]:
    if not (out_dir / "piper.duckdb").exists():
        return (0, 0)
    return query(out_dir, "SELECT (SELECT count(*) FROM loads), (SELECT count(*) FROM runs)")[0]


@pytest.mark.parametrize("crash_at", ["fetching:20", "fetched", "parquet-written:4", "merge-uncommitted", "merged"])
def test_killed_load_converges_on_the_next_run(
    piper: SimulatedPiper, tmp_path: Path, cli: Cli, crash_at: str
) -> None:
    ids = piper.dataset.session_ids
    first_batch = ids[:10]
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"

    # The uninterrupted history: two loads.
    for batch in (first_batch, ids):
        assert cli(*load_args(piper, reference, "--chunk-size", "8", *batch)).code == 0

    # The same history, with the second load killed at one stage.
    assert cli(*load_args(piper, crashed, "--chunk-size", "8", *first_batch)).code == 0
    before = database_state(crashed)
    killed = run_cli_process(load_args(piper, crashed, "--chunk-size", "8", *ids), crash_at=crash_at)
    assert killed.returncode == CRASH_EXIT_STATUS, killed.stderr

    # Right after the kill: every Parquet file under a final name is complete, the database is either
    # unchanged or fully updated.
    for part in (crashed / "parquet").rglob("*.parquet"):
        pq.read_metadata(part)
    after = database_state(crashed)
    assert after in (before, (2, len(ids))), after
    assert_no_canary(killed.stdout, killed.stderr, folder=crashed)

    # The next run converges to the uninterrupted state.
    rerun = run_cli_process(load_args(piper, crashed, "--chunk-size", "8", *ids))
    assert rerun.returncode == 0, rerun.stderr
    assert content(crashed) == content(reference)
    assert_parquet_equals_duckdb(crashed)
    assert not [p for p in crashed.rglob("*") if p.name.endswith(".tmp")], "stale temporary files removed"


def test_crash_point_is_inert_without_the_variable() -> None:
    con = duckdb.connect()
    assert con.execute("SELECT 1").fetchone() == (1,)
    from warehouse.crash import crash_point

    crash_point("merged")  # returns: the variable is not set in the test process


def test_a_load_killed_after_landing_scenario_definitions_keeps_them(piper: SimulatedPiper, out_dir: Path) -> None:
    """The definitions part has no session of its own; an empty `fetch_log` part marks it complete."""
    ids = piper.dataset.session_ids[:6]
    args = load_args(piper, out_dir, *ids)
    assert run_cli_process(args, crash_at="scenarios-landed").returncode == CRASH_EXIT_STATUS
    before = len(piper.state.requests)
    assert run_cli_process(args).returncode == 0
    landed = query(out_dir, "SELECT count(DISTINCT scenario_id) FROM runs")[0][0]
    assert landed and query(out_dir, "SELECT count(*) FROM scenarios")[0][0] == landed
    assert query(out_dir, "SELECT count(*) FROM runs r ANTI JOIN scenarios USING (scenario_id)") == [(0,)]
    assert query(out_dir, "SELECT status FROM loads ORDER BY load_seq LIMIT 1") == [("recovered",)]
    again = [r for r in piper.state.requests[before:] if "/scenarios/" in r.raw_path and "/runs/" not in r.raw_path]
    assert not again, "the recovered definitions are not fetched again"
