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
    ]
)

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
}
"""Every table a chunk lands as Parquet parts."""

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
