"""A small golden dataset for the analytics views: hand-written payloads, flattened the way a load does.

Two scenarios, eight runs. Every expectation in test_analytics_views.py is computed by hand from these
lines, so read them together:

    run  scenario  status     started (UTC)      s    criteria (verdict input/output tokens)
    a1   Refund    passed     10-01 10:00        60   c1 PASS 100/10, c2 PASS 200/20
    a2   Refund    failed     10-01 23:30       120   c1 PASS 100/10, c2 FAIL 300/30 | turn 1: c3 SKIPPED -/-
    a3   Refund    running    10-02 08:00         -   c1 FAIL 50/5
    a4   Refund    pending    -                   -   (no turns)
    b1   Cancel    error      10-02 12:00        30   c4 ERROR -/-, c5 PASS 400/-
    b2   Cancel    passed     10-02 13:00        90   c4 FAIL 100/10, c5 PASS 400/40, c6 (no verdict) -/-
    b3   Cancel    failed     10-03 09:00        45   c4 FAIL 150/15, c5 FAIL 250/25
    b4   Cancel    cancelled  10-03 10:00         -   (no turns: a status Piper may add one day)
    u1   Upgrade   passed     10-03 11:00        30   c7 PASS 10/1

Agent usage (AGENT_USAGE below): a1 two agent runs, a2 fetched with none, b1 and b2 one each, the rest never
fetched. Sessions (the dimension, as a sync lists them): a1 and a2 are agent-1 "Ana"; b1, b2 and b3 agent-2 "Bo";
u1 is a test session of agent-2; a3, a4 and b4 were never listed. a1 and u1 were loaded with their session
info (runs.agent_id set), the others get theirs from the sessions rows in the views. Scenario definitions:
c1 and c2 (turn "I want my money back", required), c3 ("Store credit instead?", not required), c4 and c5
("Cancel my plan", required), c7 ("Upgrade me", not required); c6 has no definition. Tags: Refund
[refunds, billing], Cancel [churn], Upgrade [billing, sales].
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from schemas import tables
from schemas.agent_usage import build_agent_usage_table, flatten_session_events
from schemas.flatten import SessionInfo, build_tables, flatten_run
from warehouse import analytics, pricing

ORG_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
LOAD_ID = "20261104T000000000000Z-golden"
LOADED_AT = datetime(2026, 11, 4, tzinfo=UTC)
QUESTIONS = {
    "c1": "Does the agent ask for the order number?",
    "c2": "Does the agent avoid promising a refund it cannot give?",
    "c3": "Does the agent offer store credit?",
    "c4": "Does the agent confirm the cancellation?",
    "c5": "Does the agent stay polite?",
    "c6": "Does the agent mention the cooling-off period?",
    "c7": "Does the agent explain the new price?",
}
CRITIQUES = {
    ("a2", "c2"): "Promised a refund without the order number.",
    ("a3", "c1"): "Never asked for the order number.",
    ("b2", "c4"): "Older failure: no confirmation.",
    ("b3", "c4"): "Did not confirm cancellation.",
    ("b3", "c5"): "Tone was curt.",
}
SCENARIOS = {"a": ("sc-a", "Refund"), "b": ("sc-b", "Cancel"), "u": ("sc-u", "Upgrade")}
AGENTS = {"agent-1": "Ana", "agent-2": "Bo"}
SESSIONS = {"a1": ("agent-1", False), "a2": ("agent-1", False), "b1": ("agent-2", False),
            "b2": ("agent-2", False), "b3": ("agent-2", False), "u1": ("agent-2", True)}
LOADED_WITH_INFO = ("a1", "u1")
DEFINITIONS = {  # criteria_id: (scenario key, turn index, user message, required)
    "c1": ("a", 0, "I want my money back", True), "c2": ("a", 0, "I want my money back", True),
    "c3": ("a", 1, "Store credit instead?", False), "c4": ("b", 0, "Cancel my plan", True),
    "c5": ("b", 0, "Cancel my plan", True), "c7": ("u", 0, "Upgrade me", False),
}
TAGS = {"a": ["refunds", "billing"], "b": ["churn"], "u": ["billing", "sales"]}
AGENT_USAGE = {  # session's run: its agent runs (id, model, input, output, cost USD, requests); [] fetched, none
    "a1": [("ar-1", "model-x", 1000, 100, 0.05, 3), ("ar-2", "model-x", 500, 50, 0.02, 1)],
    "a2": [],
    "b1": [("ar-3", "model-y", 200, 20, None, 2)],  # a cost the API did not send
    "b2": [("ar-4", "model-y", 300, 30, 0.01, 1)],
    "zz": [("ar-5", "model-x", 9999, 999, 9.0, 9)],  # a session without a scenario run: in no view's run
}
"""The agent's own usage: a3, a4, b3, b4 and u1 were never fetched with it (NULL, not 0, in the views)."""


Tokens = tuple[int | None, int | None]


def _criterion(run: str, index: int, crit: str, verdict: str | None, tokens: Tokens) -> dict[str, Any]:
    return {
        "id": f"{run}-t{index}-{crit}",
        "criteria_id": crit,
        "criteria_question": QUESTIONS[crit],
        "criteria_type": "llm_evaluated",
        "verdict": verdict,
        "critique": CRITIQUES.get((run, crit), f"{verdict} on {crit}."),
        "evidence": f"evidence for {run} {crit}",
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
    }


def _run(run: str, status: str, started: str | None, seconds: int | None,
         turns: list[list[tuple[str, str | None, Tokens]]]) -> dict[str, Any]:
    scenario_id, scenario_name = SCENARIOS[run[0]]
    start = datetime.fromisoformat(started) if started else None
    return {
        "id": run,
        "scenario_id": scenario_id,
        "scenario_name": scenario_name,
        "status": status,
        "started_at": start.isoformat() if start else None,
        "completed_at": (start + timedelta(seconds=seconds)).isoformat() if start and seconds is not None else None,
        "turn_results": [
            {
                "id": f"{run}-t{index}",
                "turn_index": index,
                "passed": all(verdict != "FAIL" for _, verdict, _ in criteria),
                "stopped_early": False,
                "response_content": f"agent reply {run} turn {index}",
                "criteria_results": [_criterion(run, index, *criterion) for criterion in criteria],
            }
            for index, criteria in enumerate(turns)
        ],
    }


PAYLOADS = [
    _run("a1", "passed", "2026-10-01T10:00:00+00:00", 60, [[("c1", "PASS", (100, 10)), ("c2", "PASS", (200, 20))]]),
    _run("a2", "failed", "2026-10-01T23:30:00+00:00", 120,
         [[("c1", "PASS", (100, 10)), ("c2", "FAIL", (300, 30))], [("c3", "SKIPPED", (None, None))]]),
    _run("a3", "running", "2026-10-02T08:00:00+00:00", None, [[("c1", "FAIL", (50, 5))]]),
    _run("a4", "pending", None, None, []),
    _run("b1", "error", "2026-10-02T12:00:00+00:00", 30,
         [[("c4", "ERROR", (None, None)), ("c5", "PASS", (400, None))]]),
    _run("b2", "passed", "2026-10-02T13:00:00+00:00", 90,
         [[("c4", "FAIL", (100, 10)), ("c5", "PASS", (400, 40)), ("c6", None, (None, None))]]),
    _run("b3", "failed", "2026-10-03T09:00:00+00:00", 45, [[("c4", "FAIL", (150, 15)), ("c5", "FAIL", (250, 25))]]),
    _run("b4", "cancelled", "2026-10-03T10:00:00+00:00", None, []),
    _run("u1", "passed", "2026-10-03T11:00:00+00:00", 30, [[("c7", "PASS", (10, 1))]]),
]

PRICES = pricing.PriceList((pricing.ModelPrice("judge-golden", 2.0, 10.0),), "judge-golden", "golden.toml")
"""Test prices, not real ones: $2 per million input tokens, $10 per million output tokens."""


def _session_info(run: str) -> SessionInfo:
    if run not in LOADED_WITH_INFO:
        return SessionInfo()
    agent, is_test = SESSIONS[run]
    return SessionInfo(agent, AGENTS[agent], is_test)


def _dimension_rows(load_id: str) -> dict[str, pa.Table]:
    meta = {"_load_id": load_id, "_loaded_at": LOADED_AT}
    sessions = [{"session_id": f"session-{run}", "agent_id": agent, "agent_name": AGENTS[agent], "is_test": is_test,
                 "scenario_run_status": "passed", **meta} for run, (agent, is_test) in SESSIONS.items()]
    scenarios = [{"scenario_id": sid, "name": name, "tags": TAGS[key], "turn_count": 1, **meta}
                 for key, (sid, name) in SCENARIOS.items()]
    criteria = [{"criteria_id": crit, "scenario_id": SCENARIOS[key][0], "turn_id": f"{key}-turn-{turn}",
                 "turn_order_index": turn, "user_message": message, "required": required,
                 "question": QUESTIONS[crit], **meta} for crit, (key, turn, message, required) in DEFINITIONS.items()]
    usage = [row for run, agent_runs in AGENT_USAGE.items() for row in
             flatten_session_events({"runs": [{"id": i, "model_name": m, "total_input_tokens": t_in,
                                               "total_output_tokens": t_out, "total_cost_usd": cost,
                                               "total_requests": n} for i, m, t_in, t_out, cost, n in agent_runs]},
                                    session_id=f"session-{run}")]
    return {
        "agent_usage": build_agent_usage_table(usage, load_id=load_id, loaded_at=LOADED_AT),
        "sessions": pa.Table.from_pylist(sessions, schema=tables.SESSIONS),
        "scenarios": pa.Table.from_pylist(scenarios, schema=tables.SCENARIOS),
        "scenario_criteria": pa.Table.from_pylist(criteria, schema=tables.SCENARIO_CRITERIA),
    }


def golden_tables(load_id: str = LOAD_ID) -> dict[str, pa.Table]:
    """The golden runs, turns and criteria results, and the dimension tables."""
    flat = [flatten_run(payload, session_id=f"session-{payload['id']}", org_id=ORG_ID,
                        session=_session_info(payload["id"])) for payload in PAYLOADS]
    return {**build_tables(flat, load_id=load_id, loaded_at=LOADED_AT), **_dimension_rows(load_id)}


def golden_connection(prices: pricing.PriceList | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory database with the golden tables, `token_prices` and the analytics views."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, table in golden_tables().items():
        con.register(f"golden_{name}", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM golden_{name}")
        con.unregister(f"golden_{name}")
    con.execute(pricing.CREATE_TABLE_SQL)
    if prices is not None:
        pricing.replace_prices(con, prices, LOADED_AT)
    con.execute(analytics.analytics_sql())
    return con


def fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
