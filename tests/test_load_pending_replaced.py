"""A run that was pending or running is fetched again and its rows, children included, are replaced."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Cli, SimulatedPiper, load_args, query


def test_pending_run_that_later_passes_replaces_its_rows(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    sid = "web-pending-then-passed"
    piper.dataset.add_session(sid, status="running")
    assert cli(*load_args(piper, out_dir, sid)).code == 0
    (run_id, status, turns_before) = query(out_dir, "SELECT run_id, status, turn_count FROM runs")[0]
    assert status == "running"
    first_load = query(out_dir, "SELECT max(load_id) FROM loads")[0][0]

    piper.dataset.complete_pending(sid)
    assert cli(*load_args(piper, out_dir, sid)).code == 0

    (run_id_after, status_after, turn_count) = query(out_dir, "SELECT run_id, status, turn_count FROM runs")[0]
    assert run_id_after == run_id and status_after in ("passed", "failed")
    assert turn_count >= turns_before
    second_load = query(out_dir, "SELECT max(load_id) FROM loads")[0][0]
    assert second_load != first_load
    # Every child row now comes from the second load; none of the first load's rows survive.
    for table in ("runs", "turns", "criteria_results"):
        loads = {row[0] for row in query(out_dir, f"SELECT DISTINCT _load_id FROM {table}")}
        assert loads == {second_load}, table
    assert query(out_dir, "SELECT count(*) FROM turns")[0][0] == turn_count
    per_turn = query(out_dir, "SELECT sum(criteria_count) FROM turns")[0][0]
    assert query(out_dir, "SELECT count(*) FROM criteria_results")[0][0] == per_turn

    # Now final: a third load skips it without a request.
    hits = piper.state.session_hits[sid]
    assert cli(*load_args(piper, out_dir, sid)).code == 0
    assert piper.state.session_hits[sid] == hits
    assert query(out_dir, "SELECT outcome FROM fetch_log ORDER BY load_id DESC LIMIT 1")[0][0] == "skipped"
