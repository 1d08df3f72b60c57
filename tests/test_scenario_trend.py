"""The scenario_trend view: one row per scenario and ISO week (UTC, weeks start on Monday)."""

from __future__ import annotations

from datetime import date

import pytest

from tests.analytics_golden import fetch
from tests.history_builder import HistoryRun, history_connection

approx = pytest.approx


def test_weeks_start_on_monday_in_utc() -> None:
    runs = [
        HistoryRun("Refund", "2026-11-29T23:30", {"c1": "PASS"}),          # Sunday: week of Monday 11-23
        HistoryRun("Refund", "2026-11-30T00:10", {"c1": "FAIL"}),          # Monday: a new week
        HistoryRun("Refund", "2026-11-30T01:00-05:00", {"c1": "PASS", "c2": "PASS"}),  # 06:00 UTC Monday
        HistoryRun("Refund", "2026-12-06T23:59:59", {"c1": "PASS"}, status="running"),  # Sunday, not final
        HistoryRun("Refund", "2027-01-01T12:00", {"c1": "PASS"}),          # a Friday in ISO week 2026-W53
    ]
    rows = fetch(history_connection(runs), "SELECT * FROM scenario_trend ORDER BY week")
    assert [(r["week"], r["iso_week"]) for r in rows] == [
        (date(2026, 11, 23), "2026-W48"), (date(2026, 11, 30), "2026-W49"), (date(2026, 12, 28), "2026-W53")]
    week = rows[1]
    assert (week["runs"], week["runs_final"], week["runs_passed"]) == (3, 2, 1)
    assert week["run_pass_rate"] == approx(0.5)
    assert (week["criteria_passed"], week["criteria_failed"]) == (2, 1)  # the running run's verdicts wait
    assert week["criteria_pass_rate"] == approx(2 / 3)
    assert (week["input_tokens"], week["output_tokens"]) == (400, 40)  # tokens count every run: 4 criteria
    assert week["estimated_cost_usd"] is None  # no prices
    assert (week["scenario_id"], week["scenario_name"], week["is_test"]) == ("sc-refund", "Refund", False)


def test_scenarios_are_apart() -> None:
    runs = [HistoryRun("Refund", "2026-11-02T10:00", {"c1": "PASS"}),
            HistoryRun("Cancel", "2026-11-03T10:00", {"c1": "FAIL"})]
    rows = fetch(history_connection(runs), "SELECT scenario_name, runs, run_pass_rate FROM scenario_trend "
                                           "ORDER BY scenario_name")
    assert rows == [{"scenario_name": "Cancel", "runs": 1, "run_pass_rate": 0.0},
                    {"scenario_name": "Refund", "runs": 1, "run_pass_rate": 1.0}]
