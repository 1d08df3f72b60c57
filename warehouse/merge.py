"""One load's merge into `OUT/piper.duckdb`: its rows inserted as its chunks land, made current by one COMMIT.

A `LoadMerge` opens a transaction on the writer connection. `add_chunk` inserts one landed chunk's
`runs`, `turns` and `criteria_results` rows while the load is still fetching (DuckDB compresses and
writes full row groups as they come, see `store.ROW_GROUP_SIZE`); `commit` inserts whatever landed
parts were not added yet, then settles keys and commits. Until that COMMIT nothing of the load is
visible, and a crash leaves the database as it was: the landed parts are merged again by the next load.

How `commit` settles the keys, with this load's rows already inserted (tagged `_load_id`):
1. A run that a newer load already stored stays as that load stored it: this load's copy is removed.
2. This load's runs replace their earlier rows in all three tables (children included), as do rows
   whose own key (`turn_result_id`, `criteria_result_id`) this load brings again.
3. A run that two sessions of this load returned keeps one copy per key, with the same tie-break as
   the Parquet current-state views (warehouse/views.py): the greater `session_id`.
"""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from schemas.tables import PRIMARY_KEYS
from warehouse.crash import crash_point
from warehouse.ddl import quote_ident
from warehouse.landing import load_parts, part_path

DATA_TABLES = ("runs", "turns", "criteria_results")
MERGE_WHILE_FETCHING_UP_TO = 20_000
"""The most sessions a load fetches for which `run_load` opens its merge before fetching.

An open transaction holds DuckDB's memory (its buffer pool, up to `store.DUCKDB_CONFIG`'s limit, and
what it inserted) for as long as the load fetches: measured on the bench, a 200,000-session load
peaked at 590 MB with the merge open from the start against 450 MB with the merge after the fetch.
Larger loads merge after their fetch, where those seconds matter less.
"""


class LoadMerge:
    """The open transaction of one load's merge; `commit` or `rollback` ends it."""

    def __init__(self, con: duckdb.DuckDBPyConnection, root: Path, load_id: str) -> None:
        self.con, self.root, self.load_id = con, root, load_id
        self.added: set[Path] = set()
        con.execute("BEGIN TRANSACTION")
        self.open = True

    def add_chunk(self, chunk_index: int) -> None:
        """Insert the data rows of one landed chunk from its parts; its `fetch_log` rows wait for `commit`."""
        for table in DATA_TABLES:
            path = part_path(self.root, table, self.load_id, chunk_index)
            if path.exists() and path not in self.added:
                self._insert(table, [path])

    def commit(self, load_row: dict[str, object] | None) -> dict[str, object]:
        """Add the parts not added yet, settle the keys, write the log tables and the `loads` row, COMMIT.

        `load_row` is the `loads` row; None for a load recovered from its landed parts, whose row is
        then read from its landed `loads` part or rebuilt from its fetch log. Returns the row written.
        """
        con, load_id = self.con, self.load_id
        for table in DATA_TABLES:
            rest = [path for path in load_parts(self.root, load_id, table) if path not in self.added]
            if rest:
                self._insert(table, rest)
        written = self._settle_keys()
        for table in ("fetch_log", "rejected_payloads"):
            con.execute(f"DELETE FROM {quote_ident(table)} WHERE load_id = ?", [load_id])
            parts = load_parts(self.root, load_id, table)
            if parts:
                _insert_parts(con, table, parts)
        row = load_row if load_row is not None else _landed_load_row(self.root, load_id)
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
        self.open = False
        return row

    def rollback(self) -> None:
        """End the transaction without committing; a no-op after `commit`.

        Only called while an error is already on its way up (or after a commit), so a failing ROLLBACK
        (a COMMIT that failed has already ended the transaction) must not replace that error.
        """
        if self.open:
            self.open = False
            with suppress(duckdb.Error):
                self.con.execute("ROLLBACK")

    def _insert(self, table: str, parts: list[Path]) -> None:
        _insert_parts(self.con, table, parts)
        self.added.update(parts)

    def _settle_keys(self) -> dict[str, int]:
        """Steps 1 to 3 of the module docstring; returns the rows this load keeps per table."""
        con, load_id = self.con, self.load_id
        newer = "SELECT run_id FROM runs WHERE _load_id > $load"
        for table in ("criteria_results", "turns", "runs"):  # step 1 (runs last: `newer` reads them)
            con.execute(f"DELETE FROM {table} WHERE _load_id = $load AND run_id IN ({newer})", {"load": load_id})
        for table in DATA_TABLES:
            key = quote_ident(PRIMARY_KEYS[table])
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE new_{table} AS SELECT DISTINCT run_id, {key} AS key "
                f"FROM {table} WHERE _load_id = ?",
                [load_id],
            )
        for table in ("criteria_results", "turns", "runs"):  # step 2
            key = quote_ident(PRIMARY_KEYS[table])
            con.execute(
                f"DELETE FROM {table} WHERE _load_id <> ? AND (run_id IN (SELECT run_id FROM new_runs) "
                f"OR {key} IN (SELECT key FROM new_{table}))",
                [load_id],
            )
        written: dict[str, int] = {}
        for table in DATA_TABLES:  # step 3
            key = quote_ident(PRIMARY_KEYS[table])
            written[table] = _count(con, f"SELECT count(DISTINCT key) FROM new_{table}")
            if _count(con, f"SELECT count(*) FROM {table} WHERE _load_id = ?", [load_id]) != written[table]:
                con.execute(
                    f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM (SELECT rowid, row_number() OVER "
                    f"(PARTITION BY {key} ORDER BY _loaded_at DESC, session_id DESC) AS copy "
                    f"FROM {table} WHERE _load_id = ?) WHERE copy > 1)",
                    [load_id],
                )
            con.execute(f"DROP TABLE new_{table}")
        return written


def merge_load(
    con: duckdb.DuckDBPyConnection, root: Path, load_id: str, load_row: dict[str, object] | None
) -> dict[str, object]:
    """Merge one whole landed load in a single transaction (a load merged after its fetch, or recovered)."""
    merge = LoadMerge(con, root, load_id)
    try:
        return merge.commit(load_row)
    except BaseException:
        merge.rollback()
        raise


def _insert_parts(con: duckdb.DuckDBPyConnection, table: str, parts: list[Path]) -> None:
    con.execute(
        f"INSERT INTO {quote_ident(table)} BY NAME SELECT * FROM read_parquet(?, union_by_name = true)",
        [[str(p) for p in parts]],
    )


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
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
