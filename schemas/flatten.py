"""Flatten one Piper scenario-run payload into rows of runs / turns / criteria_results, then into Arrow.

Two pure steps:

* :func:`flatten_run` validates and coerces one decoded JSON payload (any JSON value) and returns a
  :class:`FlatRun`, or raises :class:`PayloadRejected` with a reason naming the offending field. It
  raises nothing else.
* :func:`build_tables` turns many :class:`FlatRun` into three ``pa.Table`` with exactly the schemas of
  :data:`schemas.tables.DATA_TABLES`, filling ``_load_id`` and ``_loaded_at``.

The run payload names no agent: ``agent_id``, ``agent_name`` and ``is_test`` of ``runs`` come from the
session's :class:`SessionInfo` (what the sessions list says), passed in by the caller; null without one.

Field rules (the contract; see :mod:`schemas.coerce` for the readers):

* ids are non-empty strings; turn result and criteria result ids are unique within a payload.
* text and enum-like fields (``status``, ``verdict``, ``criteria_type``) are strings or null, kept
  exactly as sent and never checked against a list: a new verdict or status must load.
* ``turn_index`` (int32) and token counts accept ints, integral floats and integer strings. A token
  count outside 0..``MAX_TOKEN_COUNT`` (10^12; negative, or more than any judge call uses) is stored as
  null, unknown: it is not a count anyone can sum or price, and rejecting it would lose the run's verdicts.
* ``passed`` / ``stopped_early`` accept booleans, ``"true"``/``"false"`` and 0/1.
* timestamps are ISO 8601; one without a zone is assumed to be UTC; all are stored as UTC.
* unknown fields are ignored; a missing optional field is null; missing or null lists are empty.

Derived columns: counts of turns, passed turns (``passed`` is true), criteria, and verdicts exactly
``"PASS"`` / ``"FAIL"``; ``duration_seconds`` when both timestamps are present and ``completed_at`` is
not before ``started_at`` (a negative duration is not a duration; both timestamps are kept as sent).
Token totals (per turn from its criteria, per run from all its criteria) are the sum of the non-null
counts, and null when there is no non-null count at all (no criteria, or every count null): null means
"unknown", never 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any

import pyarrow as pa

from schemas.coerce import (
    INT64_MAX,
    INT64_MIN,
    MAX_TOKEN_COUNT,
    PayloadRejected,
    read_bool,
    read_id,
    read_int,
    read_list,
    read_object,
    read_text,
    read_timestamp,
    read_token_count,
    shown,
)
from schemas.tables import DATA_TABLES, UTC_TS

__all__ = ["FlatRun", "PayloadRejected", "SessionInfo", "build_tables", "flatten_run", "row_columns"]

_META_COLUMNS = ("_load_id", "_loaded_at")


def row_columns(table: str) -> tuple[str, ...]:
    """The keys of a :class:`FlatRun` row for ``table``: its schema's columns minus the load columns."""
    return tuple(name for name in DATA_TABLES[table].names if name not in _META_COLUMNS)


_TURN_COLUMNS = row_columns("turns")
_CRITERIA_COLUMNS = row_columns("criteria_results")
_CRITERIA_TEXTS = ("criteria_id", "criteria_type", "criteria_question", "verdict", "critique", "evidence")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the sessions list says about a session that its run payload does not: its agent, and whether
    it is a test session. Plain values, safe to hand to a Prefect task.
    """

    agent_id: str | None = None
    agent_name: str | None = None
    is_test: bool | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> SessionInfo:
        """The info of a `sessions` row (or any mapping with those keys); a value of the wrong type is None."""
        agent_id, agent_name, is_test = row.get("agent_id"), row.get("agent_name"), row.get("is_test")
        return cls(
            agent_id if isinstance(agent_id, str) else None,
            agent_name if isinstance(agent_name, str) else None,
            is_test if isinstance(is_test, bool) else None,
        )


NO_SESSION_INFO = SessionInfo()
"""A session the sessions list never showed: its runs' agent columns are null."""


@dataclass(frozen=True, slots=True)
class FlatRun:
    """One payload's rows: the run as a row, its turns and criteria results as columns (lists by column name).

    Columns, not row dicts, because that is what Arrow is built from: a chunk's tables are the runs'
    columns laid end to end. ``turns`` and ``criteria_results`` give the same data as rows.
    """

    run: dict[str, Any]
    turn_columns: dict[str, list[Any]]
    criteria_columns: dict[str, list[Any]]

    @property
    def turns(self) -> list[dict[str, Any]]:
        return _rows(self.turn_columns, _TURN_COLUMNS)

    @property
    def criteria_results(self) -> list[dict[str, Any]]:
        return _rows(self.criteria_columns, _CRITERIA_COLUMNS)


def _rows(columns: dict[str, list[Any]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [dict(zip(names, values, strict=True)) for values in zip(*(columns[name] for name in names), strict=True)]


def _token_total(total: int, known: bool, path: str) -> int | None:
    """The sum of the non-null counts, or None if there are none (see the module docstring)."""
    if not known:
        return None
    if not INT64_MIN <= total <= INT64_MAX:  # only past nine million counts of MAX_TOKEN_COUNT each
        raise PayloadRejected(f"{path} total is out of range for int64")
    return total


def _criteria_path(turn_pos: int, pos: int) -> str:
    return f"turn_results[{turn_pos}].criteria_results[{pos}]"


def flatten_run(
    payload: object, *, session_id: str, org_id: str, utf8_checked: bool = False,
    session: SessionInfo = NO_SESSION_INFO,
) -> FlatRun:
    """Validate one decoded run payload and flatten it; raises :class:`PayloadRejected` only.

    ``session``: what the sessions list says about the session (its run's agent columns).

    Pure and deterministic: the payload is not modified, and the same input gives equal output. The
    hot path (a field that is already what the schema wants) is checked inline; anything else goes to
    the readers of :mod:`schemas.coerce`, which coerce it or reject it with the field's path.

    ``utf8_checked=True`` says the payload's strings are known to be valid UTF-8 (orjson, which the
    client decodes with, refuses lone surrogates), so the non-ASCII text fields of the hot path skip
    their UTF-8 check. Leave it False for payloads decoded by anything else (``json.loads`` lets lone
    surrogates through, and Arrow cannot store them).
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
            (completed_at - started_at).total_seconds()
            if started_at is not None and completed_at is not None and completed_at >= started_at
            else None
        ),
    }

    turns: dict[str, list[Any]] = {name: [] for name in _TURN_COLUMNS}
    criteria: dict[str, list[Any]] = {name: [] for name in _CRITERIA_COLUMNS}
    c_id, c_turn, c_run, c_session, c_index = (
        criteria[name].append for name in ("criteria_result_id", "turn_result_id", "run_id", "session_id", "turn_index")
    )
    c_texts = tuple((name, criteria[name].append) for name in _CRITERIA_TEXTS)
    c_input, c_output = criteria["input_tokens"].append, criteria["output_tokens"].append
    turn_ids: set[str] = set()
    criteria_ids: set[str] = set()
    passed_turns = run_passes = run_fails = run_criteria = 0
    run_in = run_out = 0
    run_in_known = run_out_known = False
    for turn_pos, turn_item in enumerate(read_list(run, "turn_results", "")):
        turn_path = f"turn_results[{turn_pos}]"
        turn_result = read_object(turn_item, turn_path)
        turn_result_id = read_id(turn_result, "id", turn_path)
        if turn_result_id in turn_ids:
            raise PayloadRejected(f"{turn_path}.id {shown(turn_result_id)} is a duplicate turn result id")
        turn_ids.add(turn_result_id)
        turn_index = read_int(turn_result, "turn_index", turn_path, bits=32)
        passed = read_bool(turn_result, "passed", turn_path)
        turns["turn_result_id"].append(turn_result_id)
        turns["run_id"].append(run_id)
        turns["session_id"].append(session_id)
        turns["turn_index"].append(turn_index)
        turns["passed"].append(passed)
        turns["stopped_early"].append(read_bool(turn_result, "stopped_early", turn_path))
        response = turn_result.get("response_content")
        if response is not None and not (type(response) is str and (utf8_checked or response.isascii())):
            response = read_text(turn_result, "response_content", turn_path)
        turns["response_content"].append(response)
        passed_turns += passed is True

        count = passes = fails = 0
        turn_in = turn_out = 0
        in_known = out_known = False
        for pos, item in enumerate(read_list(turn_result, "criteria_results", turn_path)):
            criteria_result = item if type(item) is dict else read_object(item, _criteria_path(turn_pos, pos))
            get = criteria_result.get
            criteria_result_id = get("id")
            if not (type(criteria_result_id) is str and criteria_result_id and criteria_result_id.isascii()):
                criteria_result_id = read_id(criteria_result, "id", _criteria_path(turn_pos, pos))
            if criteria_result_id in criteria_ids:
                raise PayloadRejected(
                    f"{_criteria_path(turn_pos, pos)}.id {shown(criteria_result_id)} is a duplicate criteria result id"
                )
            criteria_ids.add(criteria_result_id)
            c_id(criteria_result_id)
            c_turn(turn_result_id)
            c_run(run_id)
            c_session(session_id)
            c_index(turn_index)
            for name, append in c_texts:
                value = get(name)
                if value is not None and not (type(value) is str and (utf8_checked or value.isascii())):
                    value = read_text(criteria_result, name, _criteria_path(turn_pos, pos))
                append(value)
            verdict = get("verdict")
            passes += verdict == "PASS"
            fails += verdict == "FAIL"
            value = get("input_tokens")
            if value is not None and not (type(value) is int and 0 <= value <= MAX_TOKEN_COUNT):
                value = read_token_count(criteria_result, "input_tokens", _criteria_path(turn_pos, pos))
            c_input(value)
            if value is not None:
                turn_in += value
                in_known = True
            value = get("output_tokens")
            if value is not None and not (type(value) is int and 0 <= value <= MAX_TOKEN_COUNT):
                value = read_token_count(criteria_result, "output_tokens", _criteria_path(turn_pos, pos))
            c_output(value)
            if value is not None:
                turn_out += value
                out_known = True
            count += 1
        where = f"{turn_path}.criteria_results"
        turns["criteria_count"].append(count)
        turns["passed_criteria_count"].append(passes)
        turns["input_tokens"].append(_token_total(turn_in, in_known, f"{where} input_tokens"))
        turns["output_tokens"].append(_token_total(turn_out, out_known, f"{where} output_tokens"))
        run_criteria, run_passes, run_fails = run_criteria + count, run_passes + passes, run_fails + fails
        run_in, run_out = run_in + turn_in, run_out + turn_out
        run_in_known, run_out_known = run_in_known or in_known, run_out_known or out_known

    where = "turn_results[*].criteria_results"
    run_row["turn_count"] = len(turn_ids)
    run_row["passed_turn_count"] = passed_turns
    run_row["criteria_count"] = run_criteria
    run_row["passed_criteria_count"] = run_passes
    run_row["failed_criteria_count"] = run_fails
    run_row["input_tokens"] = _token_total(run_in, run_in_known, f"{where} input_tokens")
    run_row["output_tokens"] = _token_total(run_out, run_out_known, f"{where} output_tokens")
    run_row["agent_id"] = session.agent_id
    run_row["agent_name"] = session.agent_name
    run_row["is_test"] = session.is_test
    return FlatRun(run=run_row, turn_columns=turns, criteria_columns=criteria)


def build_tables(flat_runs: Sequence[FlatRun], *, load_id: str, loaded_at: datetime) -> dict[str, pa.Table]:
    """Stack flattened runs into ``{"runs", "turns", "criteria_results"}`` Arrow tables.

    Each table has exactly its schema from :data:`schemas.tables.DATA_TABLES`; every row gets
    ``_load_id`` and ``_loaded_at``. The runs' columns are laid end to end (no pandas, no row-wise
    conversion) because this is the hot path of a load. ``loaded_at`` must be timezone-aware (naive
    raises ValueError).
    """
    if loaded_at.tzinfo is None or loaded_at.utcoffset() is None:
        raise ValueError("loaded_at must be a timezone-aware datetime")
    run_rows = [flat.run for flat in flat_runs]
    run_names = row_columns("runs")
    columns_by_table: dict[str, dict[str, list[Any]]] = {
        "runs": dict(zip(run_names, map(list, zip(*map(itemgetter(*run_names), run_rows), strict=True)), strict=True))
        if run_rows else {},
        "turns": _stacked([flat.turn_columns for flat in flat_runs], _TURN_COLUMNS),
        "criteria_results": _stacked([flat.criteria_columns for flat in flat_runs], _CRITERIA_COLUMNS),
    }
    constants = {
        "_load_id": pa.scalar(load_id, type=pa.string()),
        "_loaded_at": pa.scalar(loaded_at, type=UTC_TS),
    }
    tables: dict[str, pa.Table] = {}
    for table, columns in columns_by_table.items():
        schema = DATA_TABLES[table]
        rows = len(next(iter(columns.values()), ()))
        arrays = [
            pa.repeat(constants[name], rows) if name in constants else pa.array(columns.get(name, ()), type=arrow_type)
            for name, arrow_type in zip(schema.names, schema.types, strict=True)
        ]
        tables[table] = pa.Table.from_arrays(arrays, schema=schema)
    return tables


def _stacked(parts: list[dict[str, list[Any]]], names: tuple[str, ...]) -> dict[str, list[Any]]:
    """The columns of many runs laid end to end, column by column."""
    return {name: list(chain.from_iterable(part[name] for part in parts)) for name in names}
