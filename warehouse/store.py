"""The DuckDB database `OUT/piper.duckdb`: the current state, merged by key, one load per transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from schemas.tables import FINAL_STATUSES, PRIMARY_KEYS
from warehouse.crash import crash_point
from warehouse.ddl import ALL_TABLES, create_table_sql, duckdb_type, quote_ident
from warehouse.landing import load_parts

DATABASE_FILE = "piper.duckdb"
DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    # A merge reads every Parquet part of its load; bounded memory makes DuckDB spill to disk instead of
    # growing with the size of the load (see docs/performance.md, memory).
    "memory_limit": "128MB",
    "preserve_insertion_order": False,
}
CATALOG = "piper"  # the name DuckDB gives piper.duckdb when it is opened directly
ROW_GROUP_SIZE = 2_048
"""Rows per row group the writer uses (DuckDB's default is 122,880).

DuckDB compresses and writes a row group to the file as soon as it is full, while the transaction is
still open; what is left in part-filled row groups is written at COMMIT (as WAL, then again at the
CHECKPOINT that follows). With 2,048 rows most of a load is written while it inserts, not after: for
2,000 bench sessions, insert + commit + checkpoint 0.41 s -> 0.25 s, for a file 10 % larger.
Readers are unaffected by the setting.
"""


class WarehouseLocked(Exception):
    """Another process holds the DuckDB file; DuckDB's message names that process."""


def connect(path: Path, *, read_only: bool = False, lock_timeout: float = 30.0) -> duckdb.DuckDBPyConnection:
    """Open the database, creating it and any missing table or column unless read-only.

    When another process holds the file, retry for up to `lock_timeout` seconds, then raise
    `WarehouseLocked` with DuckDB's message, which names the holding process and its PID.
    """
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            con = _open(path, read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLocked(
                    f"{path} is locked by another process after waiting {lock_timeout:g} s: {exc}"
                ) from None
            time.sleep(0.25)
    if not read_only:
        ensure_tables(con)
    return con


def _open(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    if read_only:
        return duckdb.connect(str(path), read_only=True, config=DUCKDB_CONFIG)
    # Attached rather than opened, for ROW_GROUP_SIZE: see its comment.
    con = duckdb.connect(config=DUCKDB_CONFIG)
    try:
        literal = str(path).replace("'", "''")
        con.execute(f"ATTACH '{literal}' AS {CATALOG} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
        con.execute(f"USE {CATALOG}")
    except BaseException:
        con.close()
        raise
    return con


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables and add columns that a newer piper-etl defines (never renames or drops)."""
    for table, schema in ALL_TABLES.items():
        con.execute(create_table_sql(table))
        present = {row[0] for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()}
        for field in schema:
            if field.name not in present:
                con.execute(
                    f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(field.name)} {duckdb_type(field.type)}"
                )


def merged_load_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("SELECT load_id FROM loads").fetchall()}


def final_session_runs(con: duckdb.DuckDBPyConnection, session_ids: Iterable[str]) -> dict[str, str]:
    """session_id -> run_id for the requested sessions whose stored run is final (passed, failed, error)."""
    # A list parameter, not a registered Arrow table: DuckDB's `register` imports pandas (0.25 s).
    rows = con.execute(
        "SELECT r.session_id, max(r.run_id) FROM runs r "
        "JOIN (SELECT unnest(?::VARCHAR[]) AS session_id) q USING (session_id) "
        "WHERE r.status IN (SELECT unnest(?::VARCHAR[])) "
        "GROUP BY r.session_id",
        [list(session_ids), list(FINAL_STATUSES)],
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def merge_load(
    con: duckdb.DuckDBPyConnection, root: Path, load_id: str, load_row: dict[str, object] | None
) -> dict[str, object]:
    """Merge one load's landed parts into the database in a single transaction.

    Runs of this load replace their earlier rows in `runs`, `turns` and `criteria_results` (children
    included); `fetch_log` and `rejected_payloads` rows of this load are replaced too, so merging the
    same load twice changes nothing. `load_row` is the `loads` row; None for a load recovered from its
    landed parts, whose row is then read from its landed `loads` part or rebuilt from its fetch log.
    Returns the `loads` row written.
    """
    parts = {table: load_parts(root, load_id, table) for table in ALL_TABLES if table != "loads"}
    written: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for table in ("runs", "turns", "criteria_results"):
            _stage_keys(con, table, parts[table])
        # A load never replaces a run that a newer load already stored (an older landed load merged late).
        con.execute("DELETE FROM new_runs WHERE run_id IN (SELECT run_id FROM runs WHERE _load_id > ?)", [load_id])
        for child in ("new_turns", "new_criteria_results"):
            con.execute(f"DELETE FROM {child} WHERE run_id NOT IN (SELECT run_id FROM new_runs)")
        con.execute(
            "DELETE FROM criteria_results WHERE run_id IN (SELECT run_id FROM new_runs) "
            "OR criteria_result_id IN (SELECT criteria_result_id FROM new_criteria_results)"
        )
        con.execute(
            "DELETE FROM turns WHERE run_id IN (SELECT run_id FROM new_runs) "
            "OR turn_result_id IN (SELECT turn_result_id FROM new_turns)"
        )
        con.execute("DELETE FROM runs WHERE run_id IN (SELECT run_id FROM new_runs)")
        for table in ("runs", "turns", "criteria_results"):
            written[table] = _insert_rows(con, table, parts[table])
        for table in ("runs", "turns", "criteria_results"):
            con.execute(f"DROP TABLE new_{table}")
        for table in ("fetch_log", "rejected_payloads"):
            con.execute(f"DELETE FROM {quote_ident(table)} WHERE load_id = ?", [load_id])
            if parts[table]:
                con.execute(
                    f"INSERT INTO {quote_ident(table)} BY NAME SELECT * FROM read_parquet(?, union_by_name = true)",
                    [[str(p) for p in parts[table]]],
                )
        row = load_row if load_row is not None else _landed_load_row(root, load_id)
        row = row if row is not None else _recovered_load_row(con, load_id, written)
        con.execute("DELETE FROM loads WHERE load_id = ?", [load_id])
        columns = list(row)
        con.execute(
            f"INSERT INTO loads ({', '.join(quote_ident(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})",
            [row[c] for c in columns],
        )
        crash_point("merge-uncommitted")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return row


def _stage_keys(con: duckdb.DuckDBPyConnection, table: str, parts: list[Path]) -> None:
    """Temp table new_<table>: the distinct keys (and run ids) of this load's rows, not the rows themselves."""
    key = quote_ident(PRIMARY_KEYS[table])
    columns = "run_id" if table == "runs" else f"run_id, {key}"
    source = "read_parquet(?, union_by_name = true)" if parts else f"{quote_ident(table)} WHERE false"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE new_{table} AS SELECT DISTINCT {columns} FROM {source}",
        [[str(p) for p in parts]] if parts else [],
    )


def _insert_rows(con: duckdb.DuckDBPyConnection, table: str, parts: list[Path]) -> int:
    """Insert this load's rows straight from Parquet, one per key; returns how many.

    Rows stream from the files into the table; only when a key repeats within the load (two sessions
    returning the same run) does a window pick the newest copy, which needs the rows in memory.
    """
    if not parts:
        return 0
    files = [str(p) for p in parts]
    keys = _count(con, f"new_{table}")
    source = "SELECT * FROM read_parquet(?, union_by_name = true) WHERE run_id IN (SELECT run_id FROM new_runs)"
    landed = con.execute(f"SELECT count(*) FROM ({source})", [files]).fetchone()
    if landed is not None and landed[0] != keys:
        key = quote_ident(PRIMARY_KEYS[table])
        # The same tie-break as the Parquet current-state views (warehouse/views.py).
        source += f" QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _loaded_at DESC, session_id DESC) = 1"
    con.execute(f"INSERT INTO {quote_ident(table)} BY NAME {source}", [files])
    return keys


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _landed_load_row(root: Path, load_id: str) -> dict[str, object] | None:
    """The `loads` row a finished Parquet load landed, if it got that far."""
    path = root / "loads" / f"{load_id}.parquet"
    if not path.exists():
        return None
    rows: list[dict[str, object]] = pq.read_table(path).to_pylist()
    return rows[0] if rows else None


def _recovered_load_row(con: duckdb.DuckDBPyConnection, load_id: str, written: dict[str, int]) -> dict[str, object]:
    counts = dict(
        con.execute("SELECT outcome, count(*) FROM fetch_log WHERE load_id = ? GROUP BY outcome", [load_id]).fetchall()
    )
    first = con.execute("SELECT min(fetched_at) FROM fetch_log WHERE load_id = ?", [load_id]).fetchone()
    return {
        "load_id": load_id,
        "started_at": first[0] if first and first[0] else datetime.now(UTC),
        "finished_at": datetime.now(UTC),
        "status": "recovered",
        "sessions_requested": sum(counts.values()),
        "sessions_loaded": counts.get("loaded", 0),
        "sessions_not_found": counts.get("not_found", 0),
        "sessions_failed": counts.get("failed", 0),
        "sessions_rejected": counts.get("rejected", 0),
        "sessions_skipped": counts.get("skipped", 0),
        "runs_written": written.get("runs", 0),
        "turns_written": written.get("turns", 0),
        "criteria_results_written": written.get("criteria_results", 0),
        "parameters": json.dumps({"recovered": True, "note": "merged from landed parts of an interrupted load"}),
    }
