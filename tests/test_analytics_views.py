"""The analytics views pinned against hand-computed numbers on the golden dataset (tests/analytics_golden.py)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.analytics_golden import PRICES, fetch, golden_connection
from warehouse import analytics

approx = pytest.approx


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def by_key(rows: list[dict[str, Any]], *keys: str) -> dict[Any, dict[str, Any]]:
    return {tuple(row[k] for k in keys) if len(keys) > 1 else row[keys[0]]: row for row in rows}


def test_scenario_summary() -> None:
    rows = by_key(fetch(golden_connection(PRICES), "SELECT * FROM scenario_summary"), "scenario_name")
    assert set(rows) == {"Refund", "Cancel", "Upgrade"}
    refund, cancel = rows["Refund"], rows["Cancel"]
    # Refund: a1 passed, a2 failed, a3 running and a4 pending are not final.
    assert refund | {"run_pass_rate": None, "criteria_pass_rate": None, "p95_duration_seconds": None,
                     "estimated_cost_usd": None, "agent_cost_usd": None} == {
        "scenario_id": "sc-a", "scenario_name": "Refund",
        "runs": 4, "runs_passed": 1, "runs_failed": 1, "runs_error": 0, "runs_not_final": 2,
        "run_pass_rate": None,
        "criteria_evaluated": 5, "criteria_passed": 3, "criteria_failed": 1, "criteria_other_verdicts": 1,
        "criteria_pass_rate": None,
        "mean_duration_seconds": 90.0, "p95_duration_seconds": None,
        "input_tokens": 750, "output_tokens": 75,  # a3 (running) counts: the judge was paid; a4 has none
        "estimated_cost_usd": None,
        "first_run_at": utc("2026-10-01T10:00:00"), "last_run_at": utc("2026-10-02T08:00:00"),
        "is_test": False,  # a3, a4 were never listed: not known to be tests, so counted as real runs
        # the agent's own usage: a1's two agent runs, a2 fetched with none (0), a3 and a4 never fetched
        "agent_input_tokens": 1500, "agent_output_tokens": 150, "agent_cost_usd": None, "agent_requests": 4,
        "agent_runs": 2,
    }
    assert refund["agent_cost_usd"] == approx(0.07)
    # Cancel: b1's agent cost is unknown (skipped, as unknown judge tokens are), b2's is known.
    agent_columns = ("agent_runs", "agent_input_tokens", "agent_output_tokens", "agent_requests")
    assert tuple(rows["Cancel"][c] for c in agent_columns) == (2, 500, 50, 3)
    assert rows["Cancel"]["agent_cost_usd"] == approx(0.01)
    assert all(rows["Upgrade"][c] is None for c in (*agent_columns, "agent_cost_usd")), "never fetched: NULL, not 0"
    assert rows["Upgrade"]["is_test"] is True and rows["Upgrade"]["runs"] == 1
    assert refund["run_pass_rate"] == approx(1 / 2)
    assert refund["criteria_pass_rate"] == approx(3 / 4)  # the SKIPPED verdict is neither pass nor fail
    assert refund["p95_duration_seconds"] == approx(60 + 0.95 * 60)
    assert refund["estimated_cost_usd"] == approx(750 * 2e-6 + 75 * 10e-6)
    # Cancel: b1 error, b2 passed, b3 failed, b4 "cancelled" is a status we do not know: not final.
    assert (cancel["runs"], cancel["runs_passed"], cancel["runs_failed"], cancel["runs_error"]) == (4, 1, 1, 1)
    assert cancel["runs_not_final"] == 1
    assert cancel["run_pass_rate"] == approx(1 / 3)  # an error run is final and not a pass
    assert (cancel["criteria_evaluated"], cancel["criteria_passed"], cancel["criteria_failed"]) == (7, 2, 3)
    assert cancel["criteria_other_verdicts"] == 2  # ERROR and a missing verdict
    assert cancel["criteria_pass_rate"] == approx(2 / 5)
    assert cancel["mean_duration_seconds"] == approx(55.0)
    assert cancel["p95_duration_seconds"] == approx(45 + 0.9 * 45)
    assert (cancel["input_tokens"], cancel["output_tokens"]) == (1300, 90)  # b1's unknown output is skipped
    assert cancel["estimated_cost_usd"] == approx(1300 * 2e-6 + 90 * 10e-6)
    assert cancel["last_run_at"] == utc("2026-10-03T10:00:00")


def test_daily_summary_uses_utc_days_whatever_the_session_time_zone() -> None:
    con = golden_connection()
    con.execute("SET TimeZone = 'Asia/Tokyo'")  # a2 started 23:30 UTC on Oct 1: Oct 2 in Tokyo
    rows = by_key(fetch(con, "SELECT * FROM daily_summary"), "day", "scenario_name")
    assert set(rows) == {
        (date(2026, 10, 1), "Refund"), (date(2026, 10, 2), "Refund"), (None, "Refund"),
        (date(2026, 10, 2), "Cancel"), (date(2026, 10, 3), "Cancel"), (date(2026, 10, 3), "Upgrade"),
    }
    first = rows[(date(2026, 10, 1), "Refund")]
    assert (first["runs"], first["runs_passed"], first["runs_failed"], first["runs_not_final"]) == (2, 1, 1, 0)
    assert first["run_pass_rate"] == approx(0.5) and first["criteria_pass_rate"] == approx(0.75)
    assert (first["criteria_evaluated"], first["criteria_other_verdicts"]) == (5, 1)
    assert (first["input_tokens"], first["output_tokens"]) == (700, 70)
    running = rows[(date(2026, 10, 2), "Refund")]
    assert (running["runs"], running["runs_not_final"], running["criteria_evaluated"]) == (1, 1, 0)
    assert running["run_pass_rate"] is None and running["criteria_pass_rate"] is None  # never 0 for no data
    assert (running["input_tokens"], running["output_tokens"]) == (50, 5)
    pending = rows[(None, "Refund")]
    assert (pending["runs"], pending["input_tokens"], pending["estimated_cost_usd"]) == (1, None, None)
    cancel = rows[(date(2026, 10, 2), "Cancel")]
    assert (cancel["runs_passed"], cancel["runs_error"], cancel["criteria_passed"], cancel["criteria_failed"]) == (
        1, 1, 2, 1)
    assert cancel["criteria_pass_rate"] == approx(2 / 3)
    last = rows[(date(2026, 10, 3), "Cancel")]
    assert last["run_pass_rate"] == approx(0.0) and last["criteria_pass_rate"] == approx(0.0)


def test_criteria_summary() -> None:
    rows = by_key(fetch(golden_connection(PRICES), "SELECT * FROM criteria_summary"), "criteria_id")
    assert set(rows) == {"c1", "c2", "c3", "c4", "c5", "c6", "c7"}
    counts = {key: (r["evaluations"], r["passes"], r["fails"], r["other_verdicts"]) for key, r in rows.items()}
    assert counts == {
        "c1": (2, 2, 0, 0),  # a3's FAIL is in a running run: not counted yet
        "c2": (2, 1, 1, 0),
        "c3": (1, 0, 0, 1),
        "c4": (3, 0, 2, 1),
        "c5": (3, 2, 1, 0),
        "c6": (1, 0, 0, 1),
        "c7": (1, 1, 0, 0),
    }
    assert [rows[k]["pass_rate"] for k in ("c1", "c2", "c4", "c5")] == [approx(1.0), approx(0.5), approx(0.0),
                                                                        approx(2 / 3)]
    assert rows["c3"]["pass_rate"] is None and rows["c6"]["pass_rate"] is None
    assert (rows["c1"]["input_tokens"], rows["c1"]["output_tokens"]) == (250, 25)
    assert (rows["c3"]["input_tokens"], rows["c3"]["estimated_cost_usd"]) == (None, None)
    assert rows["c5"]["estimated_cost_usd"] == approx(1050 * 2e-6 + 65 * 10e-6)
    assert rows["c1"]["last_failed_at"] is None and rows["c1"]["latest_failing_critique"] is None
    c4 = rows["c4"]
    assert c4["last_failed_at"] == utc("2026-10-03T09:00:00")
    assert (c4["latest_failing_critique"], c4["latest_failing_run_id"]) == ("Did not confirm cancellation.", "b3")
    assert (c4["scenario_name"], c4["criteria_question"]) == ("Cancel", "Does the agent confirm the cancellation?")
    definitions = {key: (r["required"], r["user_message"], r["is_test"]) for key, r in rows.items()}
    assert definitions == {
        "c1": (True, "I want my money back", False), "c2": (True, "I want my money back", False),
        "c3": (False, "Store credit instead?", False), "c4": (True, "Cancel my plan", False),
        "c5": (True, "Cancel my plan", False), "c6": (None, None, False),  # a criterion with no definition
        "c7": (False, "Upgrade me", True),
    }


def test_run_costs() -> None:
    rows = by_key(fetch(golden_connection(PRICES), "SELECT * FROM run_costs"), "run_id")
    assert len(rows) == 9
    agents = {run: (r["agent_id"], r["agent_name"], r["is_test"]) for run, r in rows.items()}
    assert agents == {  # a1 and u1 from their own columns, the others from their sessions rows
        "a1": ("agent-1", "Ana", False), "a2": ("agent-1", "Ana", False), "a3": (None, None, False),
        "a4": (None, None, False), "b1": ("agent-2", "Bo", False), "b2": ("agent-2", "Bo", False),
        "b3": ("agent-2", "Bo", False), "b4": (None, None, False), "u1": ("agent-2", "Bo", True),
    }
    b1 = rows["b1"]
    assert (b1["input_tokens"], b1["output_tokens"], b1["total_tokens"], b1["judge_model"]) == (
        400, None, 400, "judge-golden")
    assert b1["input_cost_usd"] == approx(400 * 2e-6) and b1["output_cost_usd"] is None
    assert b1["estimated_cost_usd"] == approx(400 * 2e-6)  # the known part; unknown output adds nothing
    a4 = rows["a4"]
    assert (a4["total_tokens"], a4["estimated_cost_usd"], a4["run_is_final"]) == (None, None, False)
    assert rows["b4"]["run_is_final"] is False and rows["b1"]["run_is_final"] is True
    assert rows["a1"]["estimated_cost_usd"] == approx(300 * 2e-6 + 30 * 10e-6)


def test_run_costs_carry_the_agents_usage_fetched_zero_and_never_fetched_apart() -> None:
    rows = by_key(fetch(golden_connection(PRICES), "SELECT * FROM run_costs"), "run_id")
    columns = ("agent_runs", "agent_input_tokens", "agent_output_tokens", "agent_cost_usd", "agent_requests")
    usage = {run: tuple(row[c] for c in columns) for run, row in rows.items()}
    assert usage["a1"][:3] == (2, 1500, 150) and usage["a1"][4] == 4
    assert usage["a1"][3] == approx(0.07)
    assert usage["a2"] == (0, 0, 0, 0.0, 0), "fetched, no agent run: zero"
    assert usage["b1"] == (1, 200, 20, None, 2), "a cost the API did not send stays unknown"
    assert usage["b2"] == (1, 300, 30, 0.01, 1)
    for run in ("a3", "a4", "b3", "b4", "u1"):
        assert usage[run] == (None,) * 5, f"{run}: never fetched is NULL, not 0"
    assert "session-zz" not in {row["session_id"] for row in rows.values()}, "agent usage never makes a run"


def test_failures_newest_first_with_their_story() -> None:
    rows = fetch(golden_connection(), "SELECT * FROM failures")
    assert [(r["run_id"], r["criteria_id"]) for r in rows] == [
        ("b3", "c4"), ("b3", "c5"), ("b2", "c4"), ("a3", "c1"), ("a2", "c2"),
    ]
    first = rows[0]
    assert first["critique"] == "Did not confirm cancellation." and first["evidence"] == "evidence for b3 c4"
    assert (first["scenario_name"], first["turn_index"], first["run_status"]) == ("Cancel", 0, "failed")
    assert first["response_content"] == "agent reply b3 turn 0"
    assert rows[3]["run_status"] == "running"  # a failure in a running run is shown, flagged by its status
    assert [(r["agent_name"], r["is_test"], r["required"], r["user_message"]) for r in rows[2:]] == [
        ("Bo", False, True, "Cancel my plan"), (None, False, True, "I want my money back"),
        ("Ana", False, True, "I want my money back")]


def test_agent_summary() -> None:
    rows = by_key(fetch(golden_connection(PRICES), "SELECT * FROM agent_summary"), "agent_id", "scenario_id", "is_test")
    assert set(rows) == {("agent-1", "sc-a", False), (None, "sc-a", False), ("agent-2", "sc-b", False),
                         (None, "sc-b", False), ("agent-2", "sc-u", True)}
    ana = rows[("agent-1", "sc-a", False)]  # a1 passed, a2 failed
    assert (ana["agent_name"], ana["scenario_name"], ana["runs"], ana["runs_final"]) == ("Ana", "Refund", 2, 2)
    assert (ana["runs_passed"], ana["runs_failed"], ana["runs_error"]) == (1, 1, 0)
    assert ana["run_pass_rate"] == approx(0.5)
    assert (ana["criteria_passed"], ana["criteria_failed"]) == (3, 1) and ana["criteria_pass_rate"] == approx(0.75)
    assert (ana["input_tokens"], ana["output_tokens"]) == (700, 70)
    assert ana["estimated_cost_usd"] == approx(700 * 2e-6 + 70 * 10e-6)
    assert (ana["first_run_at"], ana["last_run_at"]) == (utc("2026-10-01T10:00:00"), utc("2026-10-01T23:30:00"))
    unknown = rows[(None, "sc-a", False)]  # a3 running and a4 pending, never listed
    assert (unknown["runs"], unknown["runs_final"], unknown["run_pass_rate"]) == (2, 0, None)
    assert (unknown["input_tokens"], unknown["output_tokens"]) == (50, 5)
    bo = rows[("agent-2", "sc-b", False)]  # b1 error, b2 passed, b3 failed
    assert (bo["runs"], bo["runs_passed"], bo["runs_failed"], bo["runs_error"]) == (3, 1, 1, 1)
    assert bo["run_pass_rate"] == approx(1 / 3) and bo["criteria_pass_rate"] == approx(2 / 5)
    assert (bo["input_tokens"], bo["output_tokens"]) == (1300, 90)
    test = rows[("agent-2", "sc-u", True)]  # the test session keeps a row of its own
    assert (test["runs"], test["run_pass_rate"], test["criteria_pass_rate"]) == (1, approx(1.0), approx(1.0))
    assert sum(row["runs"] for row in rows.values()) == 9


def test_fails_in_criteria_summary_are_the_failures_of_final_runs() -> None:
    con = golden_connection()
    mismatched = con.execute(
        "SELECT s.criteria_id FROM criteria_summary s LEFT JOIN (SELECT criteria_id, count(*) AS n FROM failures "
        "WHERE run_status IN ('passed', 'failed', 'error') GROUP BY 1) f USING (criteria_id) "
        "WHERE s.fails <> coalesce(f.n, 0)"
    ).fetchall()
    assert mismatched == []


def documented_columns() -> dict[str, list[str]]:
    """Column names per `## \\`view\\`` section of docs/analytics.md, in the order written."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in (Path(__file__).resolve().parents[1] / "docs" / "analytics.md").read_text("utf-8").splitlines():
        heading = re.match(r"## `(\w+)`", line)
        if heading:
            current = sections.setdefault(heading.group(1), [])
        elif current is not None and (cell := re.match(r"\| `(\w+)` \|", line)):
            current.append(cell.group(1))
    return sections


def test_every_column_is_documented_in_order() -> None:
    con = golden_connection()
    documented = documented_columns()
    for view in [*analytics.VIEWS, "token_prices"]:
        columns = [row[0] for row in con.execute(f"DESCRIBE {view}").fetchall()]
        assert documented.get(view) == columns, view


def test_the_documented_examples_run() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "analytics.md").read_text("utf-8")
    examples = text.split("```sql", 1)[1].split("```", 1)[0]
    con = golden_connection()
    for statement in filter(str.strip, examples.split(";")):
        con.execute(statement).fetchall()
