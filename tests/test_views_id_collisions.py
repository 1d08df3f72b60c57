"""The analytics views agree with the tables when a turn or criteria result id appears under two runs.

Piper's ids are unique within a payload (the flatten checks that), not across runs, so the current
state may hold the same `turn_result_id` or `criteria_result_id` under two runs, each run with every
child it reports. The views join children to their run by `run_id` and criteria to their turn by
(`run_id`, `turn_result_id`), so no row is multiplied or lost.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from schemas.flatten import build_tables, flatten_run
from tests.analytics_golden import LOAD_ID, LOADED_AT
from tests.views_database import views_database
from warehouse import analytics

FINAL = "('passed', 'failed', 'error')"


def turn(run_id: str, turn_result_id: str, index: int, *criteria: tuple[str, str]) -> dict[str, Any]:
    return {"id": turn_result_id, "turn_index": index, "passed": all(v != "FAIL" for _, v in criteria),
            "response_content": f"reply of {run_id}",
            "criteria_results": [{"id": criteria_result_id, "criteria_id": criteria_result_id, "verdict": verdict,
                                  "criteria_question": f"question {criteria_result_id}", "critique": f"{run_id} says",
                                  "input_tokens": 10, "output_tokens": 1}
                                 for criteria_result_id, verdict in criteria]}


def run(run_id: str, status: str, started: str, *turns: dict[str, Any]) -> dict[str, Any]:
    return {"id": run_id, "scenario_id": "sc-1", "scenario_name": "Collisions", "status": status,
            "started_at": started, "completed_at": None, "turn_results": list(turns)}


PAYLOADS = [
    run("run-a", "failed", "2026-10-01T10:00:00Z",
        turn("run-a", "turn-shared", 0, ("crit-shared", "FAIL"), ("crit-a", "PASS")),
        turn("run-a", "turn-a2", 1, ("crit-a2", "FAIL"))),
    run("run-b", "passed", "2026-10-02T10:00:00Z",
        turn("run-b", "turn-shared", 0, ("crit-shared", "FAIL"), ("crit-b", "PASS"))),
    run("run-c", "running", "2026-10-03T10:00:00Z",  # not final: in failures, not in the pass rates
        turn("run-c", "turn-shared", 0, ("crit-shared", "FAIL"))),
]


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    flat = [flatten_run(payload, session_id=f"session-{payload['id']}", org_id="o") for payload in PAYLOADS]
    return views_database(build_tables(flat, load_id=LOAD_ID, loaded_at=LOADED_AT))


def one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_the_tables_hold_the_collision(con: duckdb.DuckDBPyConnection) -> None:
    assert one(con, "SELECT count(*) FROM turns WHERE turn_result_id = 'turn-shared'") == 3
    assert one(con, "SELECT count(*) FROM criteria_results WHERE criteria_result_id = 'crit-shared'") == 3


def test_failures_has_one_row_per_fail_verdict_with_its_own_runs_reply(con: duckdb.DuckDBPyConnection) -> None:
    assert one(con, "SELECT count(*) FROM failures") == one(
        con, "SELECT count(*) FROM criteria_results WHERE verdict = 'FAIL'") == 4
    rows = con.execute("SELECT run_id, criteria_result_id, response_content FROM failures").fetchall()
    assert rows == [
        ("run-c", "crit-shared", "reply of run-c"),
        ("run-b", "crit-shared", "reply of run-b"),
        ("run-a", "crit-shared", "reply of run-a"),
        ("run-a", "crit-a2", "reply of run-a"),
    ]


def test_scenario_summary_fails_are_the_failures_of_final_runs(con: duckdb.DuckDBPyConnection) -> None:
    failed = one(con, "SELECT sum(criteria_failed) FROM scenario_summary")
    assert failed == one(con, f"SELECT count(*) FROM failures WHERE run_status IN {FINAL}") == 3
    evaluated = one(con, "SELECT sum(criteria_evaluated) FROM scenario_summary")
    assert evaluated == one(
        con, f"SELECT count(*) FROM criteria_results JOIN runs USING (run_id) WHERE status IN {FINAL}") == 5
    assert one(con, "SELECT sum(runs) FROM scenario_summary") == one(con, "SELECT sum(runs) FROM daily_summary") == 3


def test_criteria_summary_counts_every_criteria_row_once(con: duckdb.DuckDBPyConnection) -> None:
    evaluations, fails, tokens = con.execute(
        "SELECT sum(evaluations), sum(fails), sum(input_tokens) FROM criteria_summary").fetchone() or ()
    assert evaluations == one(
        con, f"SELECT count(*) FROM criteria_results JOIN runs USING (run_id) WHERE status IN {FINAL}") == 5
    assert fails == one(con, f"SELECT count(*) FROM failures WHERE run_status IN {FINAL}") == 3
    assert tokens == one(con, "SELECT sum(input_tokens) FROM criteria_results") == 60
    shared = con.execute(
        "SELECT evaluations, fails, latest_failing_run_id, latest_failing_critique FROM criteria_summary "
        "WHERE criteria_id = 'crit-shared'").fetchall()
    assert shared == [(2, 2, "run-b", "run-b says")]  # run-b started last among the final runs


def test_run_costs_has_one_row_per_run(con: duckdb.DuckDBPyConnection) -> None:
    assert con.execute("SELECT run_id, total_tokens FROM run_costs ORDER BY run_id").fetchall() == [
        ("run-a", 33), ("run-b", 22), ("run-c", 11)]


@pytest.mark.parametrize("order", [1, -1])
def test_the_latest_failing_critique_of_a_shared_id_does_not_depend_on_row_order(order: int) -> None:
    same_start = [run(run_id, "failed", "2026-10-05T10:00:00Z", turn(run_id, "turn-shared", 0, ("crit-shared", "FAIL")))
                  for run_id in ("run-x", "run-y")][::order]
    flat = [flatten_run(payload, session_id=f"session-{payload['id']}", org_id="o") for payload in same_start]
    con = views_database(build_tables(flat, load_id=LOAD_ID, loaded_at=LOADED_AT))
    assert con.execute("SELECT latest_failing_run_id, latest_failing_critique FROM criteria_summary").fetchall() == [
        ("run-y", "run-y says")]  # same start: the greater run id, then criteria result id, wins


def test_every_view_queries(con: duckdb.DuckDBPyConnection) -> None:
    for view in analytics.VIEWS:
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone(), view
