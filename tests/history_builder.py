"""Hand-built run histories for the views over time (criteria_stability, scenario_trend) and the `check` gate.

A history is a list of `HistoryRun`: which scenario ran when, with which verdict per criterion. Each becomes a
payload the way Piper sends it and is flattened the way a load does, so the views see real rows:

    history_connection([
        HistoryRun("Refund", "2026-11-02T10:00", {"c1": "PASS"}),
        HistoryRun("Refund", "2026-11-03T10:00", {"c1": "FAIL"}),
    ])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from schemas import tables
from schemas.flatten import build_tables, flatten_run
from warehouse import analytics, pricing

ORG_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
LOADED_AT = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass(frozen=True)
class HistoryRun:
    """One scenario run: verdicts by criteria_id (one turn); status passed when no FAIL, else failed."""

    scenario: str
    started_at: str  # ISO time, UTC when it names no offset
    verdicts: dict[str, str | None] = field(default_factory=dict)
    status: str | None = None
    run_id: str | None = None
    tokens: tuple[int, int] = (100, 10)


def scenario_id(name: str) -> str:
    return f"sc-{name.lower()}"


def question(criteria_id: str) -> str:
    return f"Question {criteria_id}?"


def _payload(run: HistoryRun, index: int) -> dict[str, Any]:
    start = datetime.fromisoformat(run.started_at)
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    run_id = run.run_id or f"run-{index:04d}"
    status = run.status or ("failed" if "FAIL" in run.verdicts.values() else "passed")
    return {
        "id": run_id,
        "scenario_id": scenario_id(run.scenario),
        "scenario_name": run.scenario,
        "status": status,
        "started_at": start.isoformat(),
        "completed_at": (start + timedelta(seconds=60)).isoformat(),
        "turn_results": [{
            "id": f"{run_id}-t0",
            "turn_index": 0,
            "passed": "FAIL" not in run.verdicts.values(),
            "stopped_early": False,
            "response_content": f"reply of {run_id}",
            "criteria_results": [
                {"id": f"{run_id}-{crit}", "criteria_id": crit, "criteria_question": question(crit),
                 "criteria_type": "llm_evaluated", "verdict": verdict, "critique": f"{verdict} on {crit}",
                 "evidence": "", "input_tokens": run.tokens[0], "output_tokens": run.tokens[1]}
                for crit, verdict in run.verdicts.items()
            ],
        }],
    }


def history_tables(runs: Sequence[HistoryRun]) -> dict[str, pa.Table]:
    """The runs, turns and criteria_results tables of a history, flattened the way a load does."""
    flat = [flatten_run(_payload(run, index), session_id=f"session-{index:04d}", org_id=ORG_ID)
            for index, run in enumerate(runs)]
    return build_tables(flat, load_id="20261201T000000000000Z-history", loaded_at=LOADED_AT)


def history_connection(runs: Sequence[HistoryRun]) -> duckdb.DuckDBPyConnection:
    """An in-memory database with the history's tables, empty dimensions and prices, and the analytics views."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    empty = {"sessions": tables.SESSIONS.empty_table(), "scenarios": tables.SCENARIOS.empty_table(),
             "scenario_criteria": tables.SCENARIO_CRITERIA.empty_table(),
             "agent_usage": tables.AGENT_USAGE.empty_table()}
    for name, table in {**history_tables(runs), **empty}.items():
        con.register(f"history_{name}", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM history_{name}")
        con.unregister(f"history_{name}")
    con.execute(pricing.CREATE_TABLE_SQL)
    con.execute(analytics.analytics_sql())
    return con
