"""Flatten one Piper scenario-run payload into rows of runs / turns / criteria_results, then into Arrow.

Two pure steps:

* :func:`flatten_run` validates and coerces one decoded JSON payload (any JSON value) and returns a
  :class:`FlatRun`, or raises :class:`PayloadRejected` with a reason naming the offending field. It
  raises nothing else.
* :func:`build_tables` turns many :class:`FlatRun` into three ``pa.Table`` with exactly the schemas of
  :data:`schemas.tables.DATA_TABLES`, filling ``_load_id`` and ``_loaded_at``.

Field rules (the contract; see :mod:`schemas.coerce` for the readers):

* ids are non-empty strings; turn result and criteria result ids are unique within a payload.
* text and enum-like fields (``status``, ``verdict``, ``criteria_type``) are strings or null, kept
  exactly as sent and never checked against a list: a new verdict or status must load.
* ``turn_index`` (int32) and tokens (int64) accept ints, integral floats and integer strings.
* ``passed`` / ``stopped_early`` accept booleans, ``"true"``/``"false"`` and 0/1.
* timestamps are ISO 8601; one without a zone is assumed to be UTC; all are stored as UTC.
* unknown fields are ignored; a missing optional field is null; missing or null lists are empty.

Derived columns: counts of turns, passed turns (``passed`` is true), criteria, and verdicts exactly
``"PASS"`` / ``"FAIL"``; ``duration_seconds`` when both timestamps are present. Token totals (per turn
from its criteria, per run from all its criteria) are the sum of the non-null counts, and null when
there is no non-null count at all (no criteria, or every count null): null means "unknown", never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

import pyarrow as pa

from schemas.coerce import (
    INT64_MAX,
    INT64_MIN,
    PayloadRejected,
    read_bool,
    read_id,
    read_int,
    read_list,
    read_object,
    read_text,
    read_timestamp,
    shown,
)
from schemas.tables import DATA_TABLES, UTC_TS

__all__ = ["FlatRun", "PayloadRejected", "build_tables", "flatten_run", "row_columns"]

_META_COLUMNS = ("_load_id", "_loaded_at")


def row_columns(table: str) -> tuple[str, ...]:
    """The keys of a :class:`FlatRun` row for ``table``: its schema's columns minus the load columns."""
    return tuple(name for name in DATA_TABLES[table].names if name not in _META_COLUMNS)


@dataclass(frozen=True, slots=True)
class FlatRun:
    """One payload's rows, keyed by column name (every column except ``_load_id`` and ``_loaded_at``)."""

    run: dict[str, Any]
    turns: list[dict[str, Any]]
    criteria_results: list[dict[str, Any]]


def _token_total(counts: list[int | None], path: str) -> int | None:
    """Sum of the non-null counts, or None if there are none (see the module docstring)."""
    known = [count for count in counts if count is not None]
    if not known:
        return None
    total = sum(known)
    if not INT64_MIN <= total <= INT64_MAX:
        raise PayloadRejected(f"{path} total is out of range for int64")
    return total


def flatten_run(payload: object, *, session_id: str, org_id: str) -> FlatRun:
    """Validate one decoded run payload and flatten it into rows; raises :class:`PayloadRejected` only.

    Pure and deterministic: the payload is not modified, and the same input gives equal output.
    """
    run = read_object(payload, "payload")
    run_id = read_id(run, "id", "")
    started_at = read_timestamp(run, "started_at", "")
    completed_at = read_timestamp(run, "completed_at", "")
    run_row: dict[str, Any] = {
        "run_id": run_id,
        "session_id": session_id,
        "org_id": org_id,
        "scenario_id": read_text(run, "scenario_id", ""),
        "scenario_name": read_text(run, "scenario_name", ""),
        "status": read_text(run, "status", ""),
        "started_at": started_at,
        "completed_at": completed_at,
        "duration_seconds": (
            (completed_at - started_at).total_seconds() if started_at is not None and completed_at is not None else None
        ),
    }

    turns: list[dict[str, Any]] = []
    criteria_rows: list[dict[str, Any]] = []
    turn_ids: set[str] = set()
    criteria_ids: set[str] = set()
    for turn_pos, turn_item in enumerate(read_list(run, "turn_results", "")):
        turn_path = f"turn_results[{turn_pos}]"
        turn_result = read_object(turn_item, turn_path)
        turn_result_id = read_id(turn_result, "id", turn_path)
        if turn_result_id in turn_ids:
            raise PayloadRejected(f"{turn_path}.id {shown(turn_result_id)} is a duplicate turn result id")
        turn_ids.add(turn_result_id)
        turn_index = read_int(turn_result, "turn_index", turn_path, bits=32)
        turn_row: dict[str, Any] = {
            "turn_result_id": turn_result_id,
            "run_id": run_id,
            "session_id": session_id,
            "turn_index": turn_index,
            "passed": read_bool(turn_result, "passed", turn_path),
            "stopped_early": read_bool(turn_result, "stopped_early", turn_path),
            "response_content": read_text(turn_result, "response_content", turn_path),
        }

        turn_criteria: list[dict[str, Any]] = []
        for criterion_pos, criterion_item in enumerate(read_list(turn_result, "criteria_results", turn_path)):
            path = f"{turn_path}.criteria_results[{criterion_pos}]"
            criteria_result = read_object(criterion_item, path)
            criteria_result_id = read_id(criteria_result, "id", path)
            if criteria_result_id in criteria_ids:
                raise PayloadRejected(f"{path}.id {shown(criteria_result_id)} is a duplicate criteria result id")
            criteria_ids.add(criteria_result_id)
            turn_criteria.append(
                {
                    "criteria_result_id": criteria_result_id,
                    "turn_result_id": turn_result_id,
                    "run_id": run_id,
                    "session_id": session_id,
                    "turn_index": turn_index,
                    "criteria_id": read_text(criteria_result, "criteria_id", path),
                    "criteria_type": read_text(criteria_result, "criteria_type", path),
                    "criteria_question": read_text(criteria_result, "criteria_question", path),
                    "verdict": read_text(criteria_result, "verdict", path),
                    "critique": read_text(criteria_result, "critique", path),
                    "evidence": read_text(criteria_result, "evidence", path),
                    "input_tokens": read_int(criteria_result, "input_tokens", path, bits=64),
                    "output_tokens": read_int(criteria_result, "output_tokens", path, bits=64),
                }
            )
        summary = _criteria_summary(turn_criteria, f"{turn_path}.criteria_results")
        del summary["failed_criteria_count"]  # turns has no such column; add it to TURNS first if wanted
        turn_row.update(summary)
        turns.append(turn_row)
        criteria_rows.extend(turn_criteria)

    run_row["turn_count"] = len(turns)
    run_row["passed_turn_count"] = sum(1 for turn_row in turns if turn_row["passed"] is True)
    run_row.update(_criteria_summary(criteria_rows, "turn_results[*].criteria_results"))
    return FlatRun(run=run_row, turns=turns, criteria_results=criteria_rows)


def _criteria_summary(criteria_rows: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """Counts and token totals over some criteria rows, for a turn row or a run row."""
    verdicts = [row["verdict"] for row in criteria_rows]
    return {
        "criteria_count": len(criteria_rows),
        "passed_criteria_count": verdicts.count("PASS"),
        "failed_criteria_count": verdicts.count("FAIL"),
        "input_tokens": _token_total([row["input_tokens"] for row in criteria_rows], f"{path} input_tokens"),
        "output_tokens": _token_total([row["output_tokens"] for row in criteria_rows], f"{path} output_tokens"),
    }


def build_tables(flat_runs: Sequence[FlatRun], *, load_id: str, loaded_at: datetime) -> dict[str, pa.Table]:
    """Stack flattened runs into ``{"runs", "turns", "criteria_results"}`` Arrow tables.

    Each table has exactly its schema from :data:`schemas.tables.DATA_TABLES`; every row gets
    ``_load_id`` and ``_loaded_at``. Built column by column (no pandas, no row-wise conversion) because
    this is the hot path of a load. ``loaded_at`` must be timezone-aware (naive raises ValueError).
    """
    if loaded_at.tzinfo is None or loaded_at.utcoffset() is None:
        raise ValueError("loaded_at must be a timezone-aware datetime")
    rows_by_table: dict[str, list[dict[str, Any]]] = {
        "runs": [flat.run for flat in flat_runs],
        "turns": [turn for flat in flat_runs for turn in flat.turns],
        "criteria_results": [criteria for flat in flat_runs for criteria in flat.criteria_results],
    }
    constants = {
        "_load_id": pa.scalar(load_id, type=pa.string()),
        "_loaded_at": pa.scalar(loaded_at, type=UTC_TS),
    }
    tables: dict[str, pa.Table] = {}
    for table, rows in rows_by_table.items():
        schema = DATA_TABLES[table]
        names = [name for name in schema.names if name not in constants]
        # One pass over the rows (each dict touched once) then a transpose: far kinder to the CPU cache
        # than one pass per column over tens of thousands of scattered dicts.
        columns = dict(zip(names, zip(*map(itemgetter(*names), rows), strict=True), strict=True)) if rows else {}
        arrays = [
            pa.repeat(constants[name], len(rows))
            if name in constants
            else pa.array(columns.get(name, ()), type=arrow_type)
            for name, arrow_type in zip(schema.names, schema.types, strict=True)
        ]
        tables[table] = pa.Table.from_arrays(arrays, schema=schema)
    return tables
