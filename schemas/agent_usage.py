"""Flatten one session's events payload into `agent_usage` rows (the agent's own runs), then into Arrow.

Pure steps, like :mod:`schemas.flatten` for scenario runs:

* :func:`flatten_session_events` validates one `GET /responses/sessions/{session_id}/events` payload and
  returns the session's rows (load columns aside), or raises :class:`PayloadRejected` naming the field.
* :func:`build_agent_usage_table` stacks rows into a table with exactly the schema
  :data:`schemas.tables.AGENT_USAGE`.

One row per agent run: `id` -> `agent_run_id`, `model_name`, `total_input_tokens` -> `input_tokens`,
`total_output_tokens` -> `output_tokens`, `total_cost_usd` -> `cost_usd`, `total_requests` -> `requests`,
`created_at`. The events themselves are not stored. A session with no agent run gets one row whose
`agent_run_id` and usage columns are null: `agent_usage` is current per session (the rows of the newest
load that landed the session), so this row is what says "fetched, no agent run" and what replaces the
rows of an earlier fetch; without it the earlier rows would stay current.

Field rules are those of :mod:`schemas.coerce`, and besides:

* `runs` must be present (a list, or null for none): a 2xx body without it is not this endpoint's answer,
  and taking it as "no agent run" would claim a cost of 0;
* the session's id, where the payload names it (`session.session_id`, a run's `session_id`), must be the
  session asked for, and agent run ids are unique within the payload;
* token and request counts outside 0..10^12, like the judge's (``MAX_TOKEN_COUNT``), are stored as null;
* `total_cost_usd` accepts a number or a string holding one; a negative, non-finite or implausible cost
  (above ``MAX_COST_USD``) is stored as null; anything else (a boolean, text that is no number) rejects it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from schemas.coerce import (
    PayloadRejected,
    at,
    read_id,
    read_list,
    read_object,
    read_text,
    read_timestamp,
    read_token_count,
    shown,
)
from schemas.tables import AGENT_USAGE

__all__ = ["MAX_COST_USD", "PayloadRejected", "build_agent_usage_table", "flatten_session_events", "read_cost_usd"]

MAX_COST_USD = 1e9
"""The largest plausible cost of one agent run in USD; above it (or below 0) the cost is unknown (null)."""


def read_cost_usd(obj: dict[str, Any], field: str, where: str) -> float | None:
    """An optional cost in USD: a number (or numeric text) from 0 to :data:`MAX_COST_USD`, else null."""
    value = obj.get(field)
    if value is None:
        return None
    if isinstance(value, bool):
        raise PayloadRejected(f"{at(where, field)} must be a number, got {shown(value)}")
    if not isinstance(value, int | float | str):
        raise PayloadRejected(f"{at(where, field)} must be a number, got {shown(value)}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except OverflowError:  # an integer beyond any float: no plausible cost
        return None
    except ValueError:
        raise PayloadRejected(f"{at(where, field)} must be a number, got {shown(value)}") from None
    return number if math.isfinite(number) and 0 <= number <= MAX_COST_USD else None


def _same_session(obj: dict[str, Any], field: str, where: str, session_id: str) -> None:
    named = read_text(obj, field, where)
    if named is not None and named != session_id:
        raise PayloadRejected(f"{at(where, field)} {shown(named)} is not the session asked for ({shown(session_id)})")


def flatten_session_events(payload: object, *, session_id: str) -> list[dict[str, Any]]:
    """The `agent_usage` rows of one session's events payload; raises :class:`PayloadRejected` only.

    Never empty: a session with no agent run gives its one row with a null `agent_run_id` (module docstring).
    """
    body = read_object(payload, "payload")
    if "runs" not in body:
        raise PayloadRejected("runs is missing")
    session = body.get("session")
    if session is not None:
        _same_session(read_object(session, "session"), "session_id", "session", session_id)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for pos, item in enumerate(read_list(body, "runs", "")):
        where = f"runs[{pos}]"
        run = read_object(item, where)
        run_id = read_id(run, "id", where)
        if run_id in seen:
            raise PayloadRejected(f"{where}.id {shown(run_id)} is a duplicate agent run id")
        seen.add(run_id)
        _same_session(run, "session_id", where, session_id)
        rows.append({
            "agent_run_id": run_id,
            "session_id": session_id,
            "model_name": read_text(run, "model_name", where),
            "input_tokens": read_token_count(run, "total_input_tokens", where),
            "output_tokens": read_token_count(run, "total_output_tokens", where),
            "cost_usd": read_cost_usd(run, "total_cost_usd", where),
            "requests": read_token_count(run, "total_requests", where),
            "created_at": read_timestamp(run, "created_at", where),
        })
    if not rows:
        rows.append(no_agent_run(session_id))
    return rows


def no_agent_run(session_id: str) -> dict[str, Any]:
    """The row of a session whose events were fetched and hold no agent run."""
    return {"agent_run_id": None, "session_id": session_id, "model_name": None, "input_tokens": None,
            "output_tokens": None, "cost_usd": None, "requests": None, "created_at": None}


def build_agent_usage_table(rows: Sequence[dict[str, Any]], *, load_id: str, loaded_at: datetime) -> pa.Table:
    """The `agent_usage` table of these rows, each with the load columns; `loaded_at` must be timezone-aware."""
    if loaded_at.tzinfo is None or loaded_at.utcoffset() is None:
        raise ValueError("loaded_at must be a timezone-aware datetime")
    meta = {"_load_id": load_id, "_loaded_at": loaded_at}
    return pa.Table.from_pylist([row | meta for row in rows], schema=AGENT_USAGE)
