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
    assert set(rows) == {"Refund", "Cancel"}
    refund, cancel = rows["Refund"], rows["Cancel"]
    # Refund: a1 passed, a2 failed, a3 running and a4 pending are not final.
    assert refund | {"run_pass_rate": None, "criteria_pass_rate": None, "p95_duration_seconds": None,
                     "estimated_cost_usd": None} == {
        "scenario_id": "sc-a", "scenario_name": "Refund",
        "runs": 4, "runs_passed": 1, "runs_failed": 1, "runs_error": 0, "runs_not_final": 2,
        "run_pass_rate": None,
        "criteria_evaluated": 5, "criteria_passed": 3, "criteria_failed": 1, "criteria_other_verdicts": 1,
        "criteria_pass_rate": None,
        "mean_duration_seconds": 90.0, "p95_duration_seconds": None,
        "input_tokens": 750, "output_tokens": 75,  # a3 (running) counts: the judge was paid; a4 has none
        "estimated_cost_usd": None,
        "first_run_at": utc("2026-10-01T10:00:00"), "last_run_at": utc("2026-10-02T08:00:00"),
    }
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
        (date(2026, 10, 2), "Cancel"), (date(2026, 10, 3), "Cancel"),
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
    assert set(rows) == {"c1", "c2", "c3", "c4", "c5", "c6"}
    counts = {key: (r["evaluations"], r["passes"], r["fails"], r["other_verdicts"]) for key, r in rows.items()}
    assert counts == {
        "c1": (2, 2, 0, 0),  # a3's FAIL is in a running run: not counted yet
        "c2": (2, 1, 1, 0),
        "c3": (1, 0, 0, 1),
        "c4": (3, 0, 2, 1),
        "c5": (3, 2, 1, 0),
        "c6": (1, 0, 0, 1),
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


def test_run_costs() -> None:
    rows = by_key(fetch(golden_connection(PRICES), "SELECT * FROM run_costs"), "run_id")
    assert len(rows) == 8
    b1 = rows["b1"]
    assert (b1["input_tokens"], b1["output_tokens"], b1["total_tokens"], b1["judge_model"]) == (
        400, None, 400, "judge-golden")
    assert b1["input_cost_usd"] == approx(400 * 2e-6) and b1["output_cost_usd"] is None
    assert b1["estimated_cost_usd"] == approx(400 * 2e-6)  # the known part; unknown output adds nothing
    a4 = rows["a4"]
    assert (a4["total_tokens"], a4["estimated_cost_usd"], a4["run_is_final"]) == (None, None, False)
    assert rows["b4"]["run_is_final"] is False and rows["b1"]["run_is_final"] is True
    assert rows["a1"]["estimated_cost_usd"] == approx(300 * 2e-6 + 30 * 10e-6)


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
