"""One item of the sessions list (`GET /sessions/`), validated: what a sync needs to know, and its `sessions` row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from schemas.coerce import PayloadRejected, read_bool, read_id, read_int, read_object, read_text, read_timestamp
from schemas.tables import SESSIONS

SESSION_COLUMNS = tuple(name for name in SESSIONS.names if not name.startswith("_"))
"""The columns of a `sessions` row that come from the listing (the rest say which load landed it)."""


@dataclass(frozen=True, slots=True)
class ListedSession:
    """A session as the list showed it.

    `row` holds the `sessions` columns (`SESSION_COLUMNS`), or is None when a field other than the id
    is unusable (`problem` says which): such a session is still fetched, but lands no `sessions` row
    and, with no `created_at`, proves no order.
    """

    session_id: str
    created_at: datetime | None
    updated_at: datetime | None
    scenario_run_status: str | None
    has_run: bool
    row: dict[str, Any] | None
    problem: str | None = None


def listed_session(item: object, where: str) -> ListedSession:
    """The listed session of one list item; `PayloadRejected` (naming `where`) when it has no usable id."""
    obj = read_object(item, where)
    session_id = read_id(obj, "id", where)
    try:
        row: dict[str, Any] = {
            "session_id": session_id,
            "agent_id": read_text(obj, "agent_id", where),
            "agent_name": read_text(obj, "agent_name", where),
            "channel_id": read_text(obj, "channel_id", where),
            "channel_type": read_text(obj, "channel_type", where),
            "channel_name": read_text(obj, "channel_name", where),
            "message_count": read_int(obj, "message_count", where, bits=64),
            "is_test": read_bool(obj, "is_test", where),
            "scenario_run_status": read_text(obj, "scenario_run_status", where),
            "created_at": read_timestamp(obj, "created_at", where),
            "updated_at": read_timestamp(obj, "updated_at", where),
        }
    except PayloadRejected as exc:
        # Still a session: its run can be fetched by id; what the list says about it is unknown.
        return ListedSession(session_id, None, None, None, True, None, exc.reason)
    status = row["scenario_run_status"]
    return ListedSession(session_id, row["created_at"], row["updated_at"], status, status is not None, row)


def sessions_table(sessions: list[ListedSession], *, load_id: str, loaded_at: datetime) -> pa.Table:
    """The `sessions` rows of these listed sessions (those with a usable row)."""
    rows = [{**s.row, "_load_id": load_id, "_loaded_at": loaded_at} for s in sessions if s.row is not None]
    return pa.Table.from_pylist(rows, schema=SESSIONS)


def same_listing(row: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Whether a listed row says what the stored `sessions` row says (timestamps compared as instants)."""
    return all(row.get(column) == stored.get(column) for column in SESSION_COLUMNS)
