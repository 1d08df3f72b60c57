"""What a sync builds on: the watermark, the stored `sessions` rows and runs of listed sessions, the unfinished runs.

Every read takes a connection whose tables show the current state (`LoadTransaction.reading_state`,
or `open_state_readonly` for a dry run) and, for a `both` load reading the database, the loads
committed in the Parquet files: a row counts only when its load is committed in every store the
load writes, as for `LoadTransaction.stored_final_runs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from schemas.tables import FINAL_STATUSES, SESSIONS
from warehouse import landing, objstore, store, views

_SESSION_COLUMNS = [name for name in SESSIONS.names if not name.startswith("_")]


@dataclass(frozen=True)
class StoredRun:
    """A session's current stored run: its status, and when it last changed by the API's clock.

    `changed_at` is the run's `completed_at`, else its `started_at` (None when the API sent neither).
    """

    run_id: str
    status: str | None
    changed_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class StateView:
    """A connection over the current state, and the load ids that count (None: every committed load).

    `parquet_root`: the landing whose current-state views `con` shows, when it does; reads by key go
    to its files directly (`store.landed_dimension_rows`) instead of through the views.
    """

    con: duckdb.DuckDBPyConnection
    committed: frozenset[str] | None = None
    parquet_root: objstore.Root | None = None

    def has(self, table: str) -> bool:
        """Whether the state has this table (a database written by an older piper-etl, opened read-only, may not)."""
        sql = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
        row = self.con.execute(sql, [table]).fetchone()
        return bool(row and row[0])

    def _filter(self, column: str) -> tuple[str, list[object]]:
        if self.committed is None:
            return "", []
        return f" AND {column} IN (SELECT unnest(?::VARCHAR[]))", [sorted(self.committed)]


def last_watermark(state: StateView | None) -> datetime | None:
    """`watermark_after` of the newest committed sync (greatest `loads.load_seq`, then load id); None: none yet."""
    if state is None or not state.has("sync_state"):
        return None
    where, params = state._filter("s.load_id")
    row = state.con.execute(
        "SELECT s.watermark_after FROM sync_state s JOIN loads l USING (load_id) WHERE true" + where +
        " ORDER BY coalesce(l.load_seq, 0) DESC, s.load_id DESC LIMIT 1", params,
    ).fetchone()
    return row[0] if row else None


def stored_runs(state: StateView | None, session_ids: Sequence[str]) -> dict[str, StoredRun]:
    """session_id -> its current stored run, for these sessions."""
    if state is None or not session_ids or not state.has("runs"):
        return {}
    where, params = state._filter("r._load_id")
    rows = state.con.execute(
        "SELECT r.session_id, arg_max(r.run_id, r._loaded_at), arg_max(r.status, r._loaded_at), "
        "arg_max(coalesce(r.completed_at, r.started_at), r._loaded_at) "
        "FROM runs r JOIN (SELECT unnest(?::VARCHAR[]) AS session_id) q USING (session_id) WHERE true" + where +
        " GROUP BY r.session_id", [list(session_ids), *params],
    ).fetchall()
    return {session: StoredRun(run, status, changed) for session, run, status, changed in rows}


def unfinished_sessions(state: StateView | None) -> list[str]:
    """Every session whose current stored run is not final (pending, running, or a status Piper added)."""
    if state is None or not state.has("runs"):
        return []
    where, params = state._filter("_load_id")
    rows = state.con.execute(
        "SELECT DISTINCT session_id FROM runs WHERE (status IS NULL OR status NOT IN (SELECT unnest(?::VARCHAR[])))"
        + where + " ORDER BY session_id", [list(FINAL_STATUSES), *params],
    ).fetchall()
    return [row[0] for row in rows]


def stored_sessions(state: StateView | None, session_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """session_id -> its current `sessions` row (the listing columns), for these sessions."""
    if state is None or not session_ids or not state.has("sessions"):
        return {}
    if state.parquet_root is not None:
        rows = store.landed_dimension_rows(state.parquet_root, "sessions", session_ids, _SESSION_COLUMNS)
    else:
        rows = store.dimension_rows(state.con, "sessions", session_ids, _SESSION_COLUMNS)
    return {session_id: dict(row) for session_id, (row, load_id) in rows.items()
            if state.committed is None or load_id in state.committed}


def landed_outcomes(landing_root: str, load_id: str) -> dict[str, str]:
    """session_id -> outcome, from the `fetch_log` parts this load has landed so far (any process's)."""
    outcomes: dict[str, str] = {}
    for part in landing.load_parts(objstore.landing_root(landing_root), load_id, "fetch_log"):
        table = objstore.read_table(part, columns=["session_id", "outcome"])
        outcomes.update(zip(table.column("session_id").to_pylist(), table.column("outcome").to_pylist(), strict=True))
    return outcomes


@contextmanager
def open_state_readonly(out_dir: Path, *, lock_timeout: float,
                        landing_url: str | None = None) -> Iterator[StateView | None]:
    """The current state of an output folder without writing anything (a dry run); None when it holds none.

    The committed Parquet files when there are any, else `piper.duckdb` opened read-only. `landing_url`:
    the object-store folder the Parquet files land in (`s3://bucket/prefix`), as `open_load` takes it;
    `out_dir` is then the local folder of `piper.duckdb`.
    """
    store_root = None if landing_url is None else objstore.ObjectPath(landing_url)
    if store_root is not None:
        objstore.check_reachable(store_root)  # no bucket is no empty state: the sync itself would fail
    parquet_root: objstore.Root = (out_dir if store_root is None else store_root) / landing.PARQUET_DIR
    found = parquet_root.is_dir() and views.present_tables(parquet_root)
    if found:
        con = views.open_current_state(parquet_root)
    elif (out_dir / store.DATABASE_FILE).is_file():
        con = store.connect(out_dir / store.DATABASE_FILE, read_only=True, lock_timeout=lock_timeout)
    else:
        yield None
        return
    try:
        yield StateView(con, parquet_root=parquet_root if found else None)
    finally:
        con.close()
