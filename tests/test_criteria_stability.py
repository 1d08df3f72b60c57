"""The criteria_stability view on hand-built verdict histories with known answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.analytics_golden import fetch
from tests.history_builder import HistoryRun, history_connection

approx = pytest.approx


def stability(runs: list[HistoryRun]) -> dict[str, dict[str, Any]]:
    rows = fetch(history_connection(runs), "SELECT * FROM criteria_stability")
    return {row["criteria_id"]: row for row in rows}


def series(verdicts: str, crit: str = "c1", scenario: str = "Refund", day: int = 1) -> list[HistoryRun]:
    """One run a day from 2026-11-{day}, verdicts as a string of P (PASS) and F (FAIL)."""
    names = {"P": "PASS", "F": "FAIL"}
    return [HistoryRun(scenario, f"2026-11-{day + i:02d}T10:00", {crit: names[v]}) for i, v in enumerate(verdicts)]


def test_the_issue_example() -> None:
    row = stability(series("PFPPF"))["c1"]
    assert (row["evaluations"], row["passes"], row["fails"], row["verdict_flips"]) == (5, 3, 2, 3)
    assert row["flip_rate"] == approx(0.75)
    assert row["pass_rate"] == approx(0.6)
    assert row["last_verdict"] == "FAIL"
    assert row["last_flip_at"] == datetime(2026, 11, 5, 10, tzinfo=UTC)
    assert row["last_evaluated_at"] == datetime(2026, 11, 5, 10, tzinfo=UTC)
    assert row["flaky"] is True
    assert (row["scenario_id"], row["scenario_name"], row["criteria_question"]) == ("sc-refund", "Refund",
                                                                                     "Question c1?")


def test_order_is_the_runs_start_not_the_load_order() -> None:
    runs = series("PFPPF")
    assert stability(list(reversed(runs)))["c1"]["verdict_flips"] == 3
    # Same start: ties go by run_id.
    tied = [HistoryRun("Refund", "2026-11-01T10:00", {"c1": v}, run_id=rid)
            for rid, v in (("run-b", "FAIL"), ("run-a", "PASS"), ("run-c", "PASS"))]
    row = stability(tied)["c1"]
    assert (row["verdict_flips"], row["last_verdict"]) == (2, "PASS")  # a PASS, b FAIL, c PASS


def test_one_evaluation_has_no_flip_rate() -> None:
    row = stability(series("P"))["c1"]
    assert (row["evaluations"], row["verdict_flips"], row["flip_rate"], row["last_flip_at"]) == (1, 0, None, None)
    assert row["flaky"] is False


def test_only_pass_and_fail_of_final_runs_count() -> None:
    runs = [
        *series("PF"),
        HistoryRun("Refund", "2026-11-10T10:00", {"c1": "SKIPPED"}),
        HistoryRun("Refund", "2026-11-11T10:00", {"c1": None}),
        HistoryRun("Refund", "2026-11-12T10:00", {"c1": "PASS"}, status="running"),
        HistoryRun("Refund", "2026-11-13T10:00", {"c1": "PASS"}, status="error"),
    ]
    row = stability(runs)["c1"]
    # P, F, then the error run's PASS: the SKIPPED, the missing verdict and the running run are left out.
    assert (row["evaluations"], row["verdict_flips"], row["last_verdict"]) == (3, 2, "PASS")


def test_criteria_of_different_scenarios_are_apart() -> None:
    rows = fetch(history_connection([*series("PF", scenario="Refund"), *series("PP", scenario="Cancel")]),
                 "SELECT scenario_id, verdict_flips FROM criteria_stability ORDER BY scenario_id")
    assert rows == [{"scenario_id": "sc-cancel", "verdict_flips": 0}, {"scenario_id": "sc-refund", "verdict_flips": 1}]


@pytest.mark.parametrize(("verdicts", "flaky", "recent_flips", "recent_pass_rate"), [
    ("PPPPPPPPPPFPF", True, 3, 0.8),     # the last ten are PPPPPPPFPF
    ("PFPFPFPPPPPPPPPPPP", False, 0, 1.0),  # flipped long ago, settled: the last ten all pass
    ("PPPPPFFFFF", False, 1, 0.5),       # broke once and stays broken: a regression, not flaky
    ("FPFFFFFFFFFF", False, 0, 0.0),     # the flips are older than the last ten
    ("PFFFFFFFPPF", True, 2, 0.2),       # the last ten are FFFFFFFPPF: the bound 0.2 counts
    ("PFFFFFFFFFPF", False, 2, 0.1),     # the last ten are FFFFFFFFPF: pass rate below the bound
    ("FPPPPPPPPPP", False, 0, 1.0),      # the one flip is into the oldest of the last ten: not counted
])
def test_flaky_rule(verdicts: str, flaky: bool, recent_flips: int, recent_pass_rate: float) -> None:
    row = stability(series(verdicts))["c1"]
    assert row["recent_evaluations"] == min(10, len(verdicts))
    assert row["recent_flips"] == recent_flips
    assert row["recent_pass_rate"] == approx(recent_pass_rate)
    assert row["flaky"] is flaky
