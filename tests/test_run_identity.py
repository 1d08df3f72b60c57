"""Hostile run identities: one run id from two sessions, child ids under two runs, a re-run session, a clock step."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from flows.pipeline import run_load
from flows.settings import LoadSettings
from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, load_args, query
from tests.test_parquet_invariant import assert_parquet_equals_duckdb
from warehouse.views import open_current_state


def both_stores(out_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows `sql` returns in DuckDB, after checking the Parquet current state returns the same."""
    parquet = open_current_state(out_dir / "parquet")
    try:
        from_parquet = parquet.execute(sql).fetchall()
    finally:
        parquet.close()
    from_duckdb = query(out_dir, sql)
    assert from_parquet == from_duckdb, sql
    return from_duckdb


def renamed_children(payload: dict[str, Any], tag: str) -> dict[str, Any]:
    """The same run, with turn and criteria result ids of its own and one turn fewer."""
    other = copy.deepcopy(payload)
    other["turn_results"] = other["turn_results"][:-1] if len(other["turn_results"]) > 1 else other["turn_results"]
    for turn in other["turn_results"]:
        turn["id"] = f"{turn['id']}-{tag}"
        for criterion in turn["criteria_results"]:
            criterion["id"] = f"{criterion['id']}-{tag}"
    return other


def two_sessions_one_run(piper: SimulatedPiper) -> tuple[str, str, str]:
    """Sessions `low` < `high` that both return run `run_id`, each with children of its own."""
    low, high = sorted(piper.dataset.session_ids[:2])
    payload = piper.dataset.run_for(low)
    assert payload is not None
    piper.dataset.set_payload(high, renamed_children(payload, "copy"))
    return low, high, str(payload["id"])


def assert_counts_match_children(out_dir: Path) -> None:
    mismatched = both_stores(out_dir, (
        "SELECT r.run_id FROM runs r LEFT JOIN (SELECT run_id, count(*) AS n FROM turns GROUP BY 1) t USING (run_id) "
        "LEFT JOIN (SELECT run_id, count(*) AS n FROM criteria_results GROUP BY 1) c USING (run_id) "
        "WHERE r.turn_count <> coalesce(t.n, 0) OR r.criteria_count <> coalesce(c.n, 0)"
    ))
    assert mismatched == [], "a run's counts differ from its child rows"


@pytest.mark.parametrize("chunk_size", ["500", "1"], ids=["one-chunk", "two-chunks"])
def test_two_sessions_of_one_load_returning_one_run_keep_the_greater_sessions_copy(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, chunk_size: str
) -> None:
    low, high, run_id = two_sessions_one_run(piper)
    assert cli(*load_args(piper, out_dir, "--chunk-size", chunk_size, "--concurrency", "1", low, high)).code == 0
    assert both_stores(out_dir, f"SELECT session_id FROM runs WHERE run_id = '{run_id}'") == [(high,)]
    turns = both_stores(out_dir, f"SELECT DISTINCT session_id FROM turns WHERE run_id = '{run_id}'")
    assert turns == [(high,)], "only the winner's turns"
    assert_counts_match_children(out_dir)
    assert_parquet_equals_duckdb(out_dir)


@pytest.mark.parametrize("order", ["low-then-high", "high-then-low"])
def test_one_run_from_two_sessions_in_two_loads_keeps_the_newer_loads_copy(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, order: str
) -> None:
    low, high, run_id = two_sessions_one_run(piper)
    first, second = (low, high) if order == "low-then-high" else (high, low)
    assert cli(*load_args(piper, out_dir, first)).code == 0
    assert cli(*load_args(piper, out_dir, second)).code == 0
    assert both_stores(out_dir, f"SELECT session_id FROM runs WHERE run_id = '{run_id}'") == [(second,)]
    assert both_stores(out_dir, f"SELECT DISTINCT session_id FROM turns WHERE run_id = '{run_id}'") == [(second,)]
    assert_counts_match_children(out_dir)
    assert_parquet_equals_duckdb(out_dir)


def test_a_child_id_reported_under_two_runs_stays_under_both_and_is_listed(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    first, second = [s for s in piper.dataset.session_ids if piper.dataset.status_of(s) in ("passed", "failed")][:2]
    one, other = piper.dataset.run_for(first), piper.dataset.run_for(second)
    assert one is not None and other is not None
    shared_turn = one["turn_results"][0]
    other = copy.deepcopy(other)
    other["turn_results"][0]["id"] = shared_turn["id"]
    other["turn_results"][0]["criteria_results"][0]["id"] = shared_turn["criteria_results"][0]["id"]
    other["turn_results"][0]["criteria_results"][0]["verdict"] = "FAIL"
    piper.dataset.set_payload(second, other)
    for batch in ([first, second], [second]):  # the second load brings the colliding ids again
        assert cli(*load_args(piper, out_dir, "--refetch", *batch)).code == 0
        owners = both_stores(out_dir, f"SELECT run_id FROM turns WHERE turn_result_id = '{shared_turn['id']}' "
                                      "ORDER BY run_id")
        assert owners == sorted([(one["id"],), (other["id"],)]), "each run keeps the child it reports"
        assert_counts_match_children(out_dir)
        collisions = both_stores(out_dir, "SELECT table_name, id, runs FROM key_collisions ORDER BY table_name")
        assert collisions == [
            ("criteria_results", shared_turn["criteria_results"][0]["id"], 2),
            ("turns", shared_turn["id"], 2),
        ]
    con = duckdb.connect(str(out_dir / "piper.duckdb"), read_only=True)
    try:
        failures = con.execute("SELECT count(*) FROM failures").fetchone()
        summarized = con.execute("SELECT sum(criteria_failed) FROM scenario_summary").fetchone()
    finally:
        con.close()
    assert summarized == failures, "scenario_summary's failures are the rows of failures"
    assert_parquet_equals_duckdb(out_dir)


def test_a_session_whose_run_was_rerun_has_only_its_newest_run(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    session = piper.dataset.session_ids[0]
    old = piper.dataset.run_for(session)
    assert old is not None
    assert cli(*load_args(piper, out_dir, session)).code == 0
    rerun = copy.deepcopy(old)
    rerun["id"] = "11111111-2222-4333-8444-555555555555"
    rerun = renamed_children(rerun, "rerun")
    piper.dataset.set_payload(session, rerun)
    assert cli(*load_args(piper, out_dir, "--refetch", session)).code == 0
    assert both_stores(out_dir, f"SELECT run_id FROM runs WHERE session_id = '{session}'") == [(rerun["id"],)]
    assert both_stores(out_dir, f"SELECT count(*) FROM turns WHERE run_id = '{old['id']}'") == [(0,)]
    landed = pq.read_table(out_dir / "parquet" / "runs", columns=["run_id"]).column("run_id").to_pylist()
    assert old["id"] in landed, "the superseded run stays in the Parquet history"
    assert_counts_match_children(out_dir)
    assert_parquet_equals_duckdb(out_dir)


def test_after_the_clock_steps_back_an_hour_the_newer_fetch_still_wins(piper: SimulatedPiper, out_dir: Path) -> None:
    pending = next(s for s in piper.dataset.session_ids if piper.dataset.status_of(s) in ("pending", "running"))
    settings = LoadSettings(org_id=piper.org_id, base_url=piper.base_url, out_dir=out_dir)
    first = run_load([pending], settings, CANARY_TOKEN)
    assert first.ok
    piper.dataset.complete_pending(pending)
    final = piper.dataset.status_of(pending)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    second = run_load([pending], settings, CANARY_TOKEN, now=an_hour_ago)
    assert second.ok and second.started_at < first.started_at
    assert both_stores(out_dir, f"SELECT status FROM runs WHERE session_id = '{pending}'") == [(final,)]
    seqs = query(out_dir, "SELECT load_id, load_seq FROM loads ORDER BY load_seq")
    assert [load_id for load_id, _ in seqs] == [first.load_id, second.load_id], "load order is not the clock's"
    assert_parquet_equals_duckdb(out_dir)
