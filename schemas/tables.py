"""Arrow schemas of the tables piper-etl writes: a public contract (add columns, never rename)."""

from __future__ import annotations

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")

FINAL_STATUSES = ("passed", "failed", "error")
"""Run statuses after which Piper never changes the run again."""

FETCH_OUTCOMES = ("loaded", "not_found", "failed", "rejected", "skipped")

RUNS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("org_id", pa.string(), nullable=False),
        pa.field("scenario_id", pa.string()),
        pa.field("scenario_name", pa.string()),
        pa.field("status", pa.string()),
        pa.field("started_at", UTC_TS),
        pa.field("completed_at", UTC_TS),
        pa.field("duration_seconds", pa.float64()),
        pa.field("turn_count", pa.int32(), nullable=False),
        pa.field("passed_turn_count", pa.int32(), nullable=False),
        pa.field("criteria_count", pa.int32(), nullable=False),
        pa.field("passed_criteria_count", pa.int32(), nullable=False),
        pa.field("failed_criteria_count", pa.int32(), nullable=False),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("_load_id", pa.string(), nullable=False),
        pa.field("_loaded_at", UTC_TS, nullable=False),
        # From the session's `sessions` row (the sessions list), not from the run payload: null when the
        # session was never listed. Appended after the load columns, where `ensure_tables` adds them to an
        # older database, so that every database has one column order.
        pa.field("agent_id", pa.string()),
        pa.field("agent_name", pa.string()),
        pa.field("is_test", pa.bool_()),
    ]
)
"""One row per scenario run: the by-session payload's run, its counts and token totals, and the session's agent."""

TURNS = pa.schema(
    [
        pa.field("turn_result_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("turn_index", pa.int32()),
        pa.field("passed", pa.bool_()),
        pa.field("stopped_early", pa.bool_()),
        pa.field("response_content", pa.string()),
        pa.field("criteria_count", pa.int32(), nullable=False),
        pa.field("passed_criteria_count", pa.int32(), nullable=False),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("_load_id", pa.string(), nullable=False),
        pa.field("_loaded_at", UTC_TS, nullable=False),
    ]
)

CRITERIA_RESULTS = pa.schema(
    [
        pa.field("criteria_result_id", pa.string(), nullable=False),
        pa.field("turn_result_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("turn_index", pa.int32()),
        pa.field("criteria_id", pa.string()),
        pa.field("criteria_type", pa.string()),
        pa.field("criteria_question", pa.string()),
        pa.field("verdict", pa.string()),
        pa.field("critique", pa.string()),
        pa.field("evidence", pa.string()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("_load_id", pa.string(), nullable=False),
        pa.field("_loaded_at", UTC_TS, nullable=False),
    ]
)

FETCH_LOG = pa.schema(
    [
        pa.field("load_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("fetched_at", UTC_TS, nullable=False),
        pa.field("elapsed_ms", pa.float64()),
    ]
)

REJECTED_PAYLOADS = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("load_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("body", pa.string()),
        pa.field("rejected_at", UTC_TS, nullable=False),
    ]
)

LOADS = pa.schema(
    [
        pa.field("load_id", pa.string(), nullable=False),
        pa.field("started_at", UTC_TS, nullable=False),
        pa.field("finished_at", UTC_TS),
        pa.field("status", pa.string(), nullable=False),
        pa.field("sessions_requested", pa.int64(), nullable=False),
        pa.field("sessions_loaded", pa.int64(), nullable=False),
        pa.field("sessions_not_found", pa.int64(), nullable=False),
        pa.field("sessions_failed", pa.int64(), nullable=False),
        pa.field("sessions_rejected", pa.int64(), nullable=False),
        pa.field("sessions_skipped", pa.int64(), nullable=False),
        pa.field("runs_written", pa.int64(), nullable=False),
        pa.field("turns_written", pa.int64(), nullable=False),
        pa.field("criteria_results_written", pa.int64(), nullable=False),
        pa.field("parameters", pa.string()),
        # Load order in this output folder, never taken from the wall clock alone (warehouse/leases.py):
        # the current state of a run is that of the load with the greatest load_seq. Null for loads
        # written before piper-etl 0.2, which count as older than every later load.
        pa.field("load_seq", pa.int64()),
    ]
)

SESSIONS = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("agent_id", pa.string()),
        pa.field("agent_name", pa.string()),
        pa.field("channel_id", pa.string()),
        pa.field("channel_type", pa.string()),
        pa.field("channel_name", pa.string()),
        pa.field("message_count", pa.int64()),
        pa.field("is_test", pa.bool_()),
        pa.field("scenario_run_status", pa.string()),
        pa.field("created_at", UTC_TS),
        pa.field("updated_at", UTC_TS),
        pa.field("_load_id", pa.string(), nullable=False),
        pa.field("_loaded_at", UTC_TS, nullable=False),
    ]
)
"""One row per listed session that has a scenario run, as the sessions list last showed it."""

SCENARIOS = pa.schema(
    [
        pa.field("scenario_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("description", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("turn_count", pa.int32()),
        pa.field("created_by_user_id", pa.string()),
        pa.field("created_at", UTC_TS),
        pa.field("updated_at", UTC_TS),
        pa.field("_load_id", pa.string(), nullable=False),
        pa.field("_loaded_at", UTC_TS, nullable=False),
    ]
)

SCENARIO_CRITERIA = pa.schema(
    [
        pa.field("criteria_id", pa.string(), nullable=False),
        pa.field("scenario_id", pa.string(), nullable=False),
        pa.field("turn_id", pa.string()),
        pa.field("turn_order_index", pa.int32()),
        pa.field("user_message", pa.string()),
        pa.field("required", pa.bool_()),
        pa.field("question", pa.string()),
        pa.field("criteria_type", pa.string()),
        pa.field("criteria_order_index", pa.int32()),
        pa.field("few_shot_example_count", pa.int32()),
        pa.field("_load_id", pa.string(), nullable=False),
        pa.field("_loaded_at", UTC_TS, nullable=False),
    ]
)
"""One row per criterion of each scenario's latest fetched definition (a re-fetched scenario replaces its rows)."""

SYNC_STATE = pa.schema(
    [
        pa.field("load_id", pa.string(), nullable=False),
        pa.field("started_at", UTC_TS, nullable=False),
        pa.field("finished_at", UTC_TS),
        pa.field("status", pa.string(), nullable=False),
        pa.field("watermark_before", UTC_TS),
        pa.field("watermark_after", UTC_TS),
        pa.field("pages_read", pa.int64(), nullable=False),
        pa.field("sessions_listed", pa.int64(), nullable=False),
        pa.field("sessions_queued", pa.int64(), nullable=False),
        pa.field("full_scan", pa.bool_(), nullable=False),
    ]
)
"""One row per sync, landed and committed with the load it ran (its `load_id`)."""

AGENT_USAGE = pa.schema(
    [
        pa.field("agent_run_id", pa.string()),  # null only in the row of a session fetched with no agent run
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("model_name", pa.string()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("requests", pa.int64()),
        pa.field("created_at", UTC_TS),
        pa.field("_load_id", pa.string(), nullable=False),
        pa.field("_loaded_at", UTC_TS, nullable=False),
    ]
)
"""One row per agent run of a session (the agent's own usage, not the judge's), from the session's events.

A session fetched with no agent run has one row with a null `agent_run_id` (and null usage), so that
"fetched, no agent run" is stored and replaces the rows of an earlier fetch (schemas/agent_usage.py).
"""

DATA_TABLES: dict[str, pa.Schema] = {
    "runs": RUNS,
    "turns": TURNS,
    "criteria_results": CRITERIA_RESULTS,
}
"""The tables whose current state is keyed by run: a re-fetched run replaces its rows in all three."""

LANDED_TABLES: dict[str, pa.Schema] = {
    **DATA_TABLES,
    "fetch_log": FETCH_LOG,
    "rejected_payloads": REJECTED_PAYLOADS,
    "sessions": SESSIONS,
    "scenarios": SCENARIOS,
    "scenario_criteria": SCENARIO_CRITERIA,
    "sync_state": SYNC_STATE,
    "agent_usage": AGENT_USAGE,
}
"""Every table a load lands as Parquet parts (its `loads` row, the commit, lands last)."""

# How each landed table's current state follows from its committed parts. The DuckDB merge
# (warehouse/merge.py), the Parquet views (warehouse/views.py), compaction and the BI snapshot all
# apply these three rules, so that every store shows the same rows:
#   * DATA_TABLES: current by run version (warehouse/merge.py states the rule);
#   * HISTORY_TABLES: every row of every committed load is kept, keyed by load;
#   * DIMENSION_KEYS: for each key value, the rows of the newest committed load (greatest
#     `loads.load_seq`, then load_id) that landed that key are current; older loads' rows of that key are not.
HISTORY_TABLES: tuple[str, ...] = ("fetch_log", "rejected_payloads", "sync_state")
"""Append-only: every committed load's rows stay (plus `loads` itself, the commit marker)."""

DIMENSION_KEYS: dict[str, str] = {
    "sessions": "session_id",
    "scenarios": "scenario_id",
    "scenario_criteria": "scenario_id",  # a re-fetched scenario replaces every one of its criteria rows
    "agent_usage": "session_id",  # a session's events fetched again replace every one of its agent runs
}
"""Dimension table -> the column whose newest landed rows replace older ones."""

PRIMARY_KEYS: dict[str, str] = {
    "runs": "run_id",
    "turns": "turn_result_id",
    "criteria_results": "criteria_result_id",
}

TOKEN_PRICES = pa.schema(
    [
        pa.field("judge_model", pa.string(), nullable=False),
        pa.field("input_usd_per_million", pa.float64()),
        pa.field("output_usd_per_million", pa.float64()),
        pa.field("selected", pa.bool_(), nullable=False),
        pa.field("pricing_file", pa.string()),
        pa.field("priced_at", UTC_TS, nullable=False),
    ]
)
"""Judge token prices from the pricing file; costs use the one `selected` row (none selected: costs are NULL)."""
