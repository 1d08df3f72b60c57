"""The DuckDB database `OUT/piper.duckdb`: opening it as its one writer (or a reader), its tables, lookups.

The merge of a load lives in `warehouse/merge.py`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import duckdb

from schemas.tables import DIMENSION_KEYS, FINAL_STATUSES
from warehouse.ddl import ALL_TABLES, create_table_sql, duckdb_type, quote_ident

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
CHECKPOINT that follows). With 2,048 rows most of a load is written while it inserts, not after, for a
slightly larger file (docs/performance.md, end to end). Readers are unaffected by the setting.
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


def final_session_runs(con: duckdb.DuckDBPyConnection, session_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """session_id -> (run_id, load_id) for the requested sessions whose current run is final."""
    # A list parameter, not a registered Arrow table: DuckDB's `register` imports pandas (0.25 s).
    rows = con.execute(
        "SELECT r.session_id, max(r.run_id), max(r._load_id) FROM runs r "
        "JOIN (SELECT unnest(?::VARCHAR[]) AS session_id) q USING (session_id) "
        "WHERE r.status IN (SELECT unnest(?::VARCHAR[])) "
        "GROUP BY r.session_id",
        [list(session_ids), list(FINAL_STATUSES)],
    ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def dimension_rows(
    con: duckdb.DuckDBPyConnection, table: str, keys: Iterable[str], columns: Iterable[str]
) -> dict[str, tuple[dict[str, object], str]]:
    """key -> (the named columns, `_load_id`) of the current row of each requested key of a dimension table.

    For a table with one row per key (`sessions`, `scenarios`); `con` holds only current rows (the
    database, or the Parquet current-state views).
    """
    key, names = DIMENSION_KEYS[table], list(columns)
    selected = ", ".join(f"t.{quote_ident(name)}" for name in names)
    rows = con.execute(
        f"SELECT t.{quote_ident(key)}, t._load_id, {selected} FROM {quote_ident(table)} t "
        f"JOIN (SELECT unnest(?::VARCHAR[]) AS k) q ON t.{quote_ident(key)} = q.k",
        [list(keys)],
    ).fetchall()
    return {row[0]: (dict(zip(names, row[2:], strict=True)), row[1]) for row in rows}
