"""Drifting payloads through the whole load: loaded as the contract says, or rejected and kept raw."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import Cli, SimulatedPiper, load_args, query

DRIFTED = {
    "id": "run-drift",
    "scenario_id": "scn-1",
    "scenario_name": None,
    "status": "cancelled",  # a status nobody announced
    "started_at": "2026-11-01T12:00:00+02:00",  # an offset
    "completed_at": "2026-11-01T10:05:00",  # no zone: taken as UTC
    "cost_summary": {"usd": 0.12},  # a new field
    "turn_results": [
        {
            "id": "turn-1",
            "turn_index": "0",  # a number as a string
            "passed": "true",
            "stopped_early": None,
            "criteria_results": [
                {"id": "c-1", "verdict": "PASS", "input_tokens": "120", "output_tokens": 30.0},
                {"id": "c-2", "verdict": "NEEDS_REVIEW", "input_tokens": None, "judge_model": "new"},
            ],
        },
        {"id": "turn-2"},  # nearly everything missing
    ],
}


def test_drifted_payload_loads_with_coercions(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    piper.dataset.add_session("drift")
    piper.dataset.set_payload("drift", DRIFTED)
    assert cli(*load_args(piper, out_dir, "drift")).code == 0
    run = query(out_dir, "SELECT status, started_at, completed_at, duration_seconds, criteria_count, "
                         "passed_criteria_count, failed_criteria_count, input_tokens, output_tokens FROM runs")[0]
    assert run[0] == "cancelled"
    assert run[1] == datetime(2026, 11, 1, 10, 0, tzinfo=UTC) and run[2] == datetime(2026, 11, 1, 10, 5, tzinfo=UTC)
    assert run[3:] == (300.0, 2, 1, 0, 120, 30)
    assert query(out_dir, "SELECT verdict FROM criteria_results ORDER BY criteria_result_id") == [
        ("PASS",), ("NEEDS_REVIEW",)
    ]
    assert query(out_dir, "SELECT turn_index, passed FROM turns ORDER BY turn_result_id") == [(0, True), (None, None)]


def test_undriftable_payload_is_rejected_and_kept(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    bad = {**DRIFTED, "started_at": "last tuesday"}
    piper.dataset.add_session("bad-ts")
    piper.dataset.set_payload("bad-ts", bad)
    result = cli(*load_args(piper, out_dir, "bad-ts"))
    assert result.code == 1
    reason, body = query(out_dir, "SELECT reason, body FROM rejected_payloads")[0]
    assert "started_at" in reason and "last tuesday" in body
    assert query(out_dir, "SELECT outcome FROM fetch_log")[0][0] == "rejected"
