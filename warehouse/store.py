"""The DuckDB database `OUT/piper.duckdb`: opening it as its one writer (or a reader), its tables, lookups.

The merge of a load lives in `warehouse/merge.py`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import duckdb

from schemas.tables import DIMENSION_KEYS, FINAL_STATUSES
from warehouse import objstore, views
from warehouse.ddl import ALL_TABLES, create_table_sql, duckdb_type, quote_ident

DATABASE_FILE = "piper.duckdb"
DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    # A merge reads every Parquet part of its load; bounded memory makes DuckDB spill to disk instead of
    # growing with the size of the load (see docs/performance.md, memory).
    "memory_limit": "128MB",
    "preserve_insertion_order": False,
}
CATALOG = "piper"  # the name DuckDB gives piper.duckdb when it is opened directly
ROW_GROUP_SIZE = 16_384
"""Rows per row group the writer uses (DuckDB's default is 122,880).

DuckDB compresses and writes a row group to the file as soon as it is full, while the transaction is
still open; what is left in part-filled row groups is written at COMMIT (as WAL, then again at the
CHECKPOINT that follows). With DuckDB's default nothing of a 2,000-session load fills a row group, so
all of it went through the WAL. Smaller row groups cost every later CHECKPOINT, though: in storage
v1.1.3 a checkpoint rewrites the metadata of every row group of every table, so its time grows with
the number of row groups in the file, that is with the warehouse (measured on 250,000 sessions:
2,048-row groups, about 1,300 in `criteria_results` alone, made each of a load's two checkpoints,
the database's and the BI standby's, cost 0.15 to 0.2 s). 16,384 rows: most of a large load is
written while it inserts, and the checkpoints of a long history stay cheap (docs/performance.md,
history). Readers are unaffected by the setting.
"""


DEFAULT_STORAGE_VERSION = "v1.1.3"
"""The DuckDB storage version of every DuckDB file piper-etl creates, unless `duckdb_storage_version` says otherwise.

DuckDB 2.0 writes by default a format that no 1.x release can open, and BI tools ship older drivers. A
file created in the format of v1.1.3 opens in DuckDB 1.1.3 and every later release, with every table
and view (tests/test_duckdb_storage_version.py); DuckDB keeps a file's format for every later write
and checkpoint, and only newer compression methods are left unused (docs/bi.md, older readers).
"""


class WarehouseLocked(Exception):
    """Another process holds the DuckDB file; DuckDB's message names that process."""


def connect(
    path: Path, *, read_only: bool = False, lock_timeout: float = 30.0, storage_version: str = DEFAULT_STORAGE_VERSION,
) -> duckdb.DuckDBPyConnection:
    """Open the database, creating it and any missing table or column unless read-only.

    A database created here is in the format of `storage_version`; an existing one keeps its own (DuckDB
    cannot lower it in place: docs/bi.md says how to convert one).

    When another process holds the file, retry for up to `lock_timeout` seconds, then raise
    `WarehouseLocked` with DuckDB's message, which names the holding process and its PID.
    """
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            con = _open(path, read_only, storage_version)
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


def _open(path: Path, read_only: bool, storage_version: str) -> duckdb.DuckDBPyConnection:
    if read_only:
        return duckdb.connect(str(path), read_only=True, config=DUCKDB_CONFIG)
    # Attached rather than opened, for ROW_GROUP_SIZE: see its comment.
    con = duckdb.connect(config=DUCKDB_CONFIG)
    try:
        literal = str(path).replace("'", "''")
        con.execute(f"ATTACH '{literal}' AS {CATALOG} ({attach_options(path, storage_version)})")
        con.execute(f"USE {CATALOG}")
    except BaseException:
        con.close()
        raise
    return con


def attach_options(path: Path, storage_version: str) -> str:
    """The writer's ATTACH options for `path`: its row group size, and `storage_version` if it creates the file.

    Only on creation: DuckDB refuses to lower the version of an existing file, and keeps the file's
    own version for every later write without being told.
    """
    options = f"ROW_GROUP_SIZE {ROW_GROUP_SIZE}"
    if not path.exists():
        options += f", STORAGE_VERSION {_quoted(storage_version)}"
    return options


def check_storage_version(storage_version: str) -> None:
    """Raise ValueError, listing the values DuckDB accepts, unless DuckDB can write files in that storage version."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH ':memory:' AS storage_version_check (STORAGE_VERSION {_quoted(storage_version)})")
    except duckdb.Error as exc:
        known = str(exc).partition("valid options are: ")[2].strip()
        raise ValueError(
            f"must be a DuckDB release whose storage format DuckDB {duckdb.__version__} can write "
            f"({known or exc}), not {storage_version!r}"
        ) from None
    finally:
        con.close()


def storage_format(con: duckdb.DuckDBPyConnection, catalog: str) -> str:
    """The storage format of an attached database file, named by DuckDB after its first release ('v1.0.0+')."""
    row = con.execute("SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = ?",
                      [catalog]).fetchone()
    return str(row[0]) if row and row[0] else ""


@cache
def storage_format_of(storage_version: str) -> str:
    """The `storage_format` of a file created in `storage_version` ('v1.1.3' -> 'v1.0.0+'), from a throwaway file.

    DuckDB names a file's format by the first release that wrote it, and tells only by creating one.
    """
    with tempfile.TemporaryDirectory(prefix="piper-storage-") as folder:
        con = duckdb.connect()
        try:
            literal = str(Path(folder) / "probe.duckdb").replace("'", "''")
            con.execute(f"ATTACH '{literal}' AS probe (STORAGE_VERSION {_quoted(storage_version)})")
            return storage_format(con, "probe")
        finally:
            con.close()


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables and add columns that a newer piper-etl defines (never renames or drops).

    One catalog read for every table: when nothing is missing, which is every load but the first after
    an upgrade, nothing is written.
    """
    present: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = current_schema()"
    ).fetchall():
        present.setdefault(table, set()).add(column)
    for table, schema in ALL_TABLES.items():
        if table not in present:
            con.execute(create_table_sql(table))
            continue
        for field in schema:
            if field.name not in present[table]:
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


_LANDED_DIMENSION = """SELECT t.k, t._load_id, {selected} FROM (
    SELECT {key} AS k, * FROM {rows} WHERE {key} IN (SELECT unnest($keys::VARCHAR[]))
) AS t JOIN (SELECT load_id, load_seq FROM {loads}) AS l ON l.load_id = t._load_id
QUALIFY rank() OVER (PARTITION BY t.k ORDER BY coalesce(l.load_seq, 0) DESC, t._load_id DESC) = 1"""


def landed_dimension_rows(
    parquet_root: objstore.Root, table: str, keys: Iterable[str], columns: Iterable[str]
) -> dict[str, tuple[dict[str, object], str]]:
    """`dimension_rows` answered from the committed Parquet files under `parquet_root`, for these keys only.

    The rule of the current-state view (`views.dimension_sql`: per key, the rows of the newest committed
    load that landed it), applied to the rows of the asked keys alone, over only that table's files and
    the `loads` files: not the views of every table, which bind every file of the landing.
    """
    layout = views.read_layout(parquet_root)
    if not {table, "loads"} <= layout.tables():
        return {}
    root = parquet_root.as_posix()
    key, names = quote_ident(DIMENSION_KEYS[table]), list(columns)
    sql = _LANDED_DIMENSION.format(
        selected=", ".join(f"t.{quote_ident(name)}" for name in names), key=key,
        rows=views.source_sql(root, table, layout.paths(table)),
        loads=views.source_sql(root, "loads", layout.paths("loads")))
    con = duckdb.connect()
    try:
        objstore.register(con, parquet_root)
        rows = con.execute(sql, {"keys": list(keys)}).fetchall()
    finally:
        con.close()
    return {row[0]: (dict(zip(names, row[2:], strict=True)), row[1]) for row in rows}


_LANDED_VERSIONS = """CREATE TEMP TABLE asked_versions AS
WITH asked AS (SELECT DISTINCT unnest($sessions::VARCHAR[]) AS session_id),
landed_log AS (SELECT load_id, session_id, outcome, run_id, fetched_at FROM {fetch_log}),
asked_runs AS (
    SELECT DISTINCT run_id FROM landed_log
    WHERE outcome = 'loaded' AND session_id IN (SELECT session_id FROM asked)
),
involved AS (
    SELECT session_id FROM asked
    UNION SELECT session_id FROM landed_log WHERE run_id IN (SELECT run_id FROM asked_runs)
),
fetch_log AS (SELECT * FROM landed_log WHERE session_id IN (SELECT session_id FROM involved) {newest}),
loads AS (SELECT load_id, load_seq FROM {loads})
SELECT * FROM ({current_versions}) WHERE session_id IN (SELECT session_id FROM asked)"""
_LANDED_FINAL_RUNS = """SELECT r.session_id, max(r.run_id), max(r._load_id) FROM {runs} AS r
JOIN asked_versions v ON r.run_id = v.run_id AND r.session_id = v.session_id AND r._load_id = v.load_id
WHERE r._load_id IN ({load_ids}) AND r.status IN (SELECT unnest($final::VARCHAR[]))
GROUP BY r.session_id"""


def landed_final_session_runs(parquet_root: objstore.Root, session_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """`final_session_runs` answered from the committed Parquet files under `parquet_root`, for these sessions only.

    The same rule as the current-state views (`warehouse/views.py`, over the same committed files),
    applied to the versions that can decide the requested sessions' current runs: their own, and those
    of every session that landed one of their run ids; the `runs` files are read only when one of them
    has a version, and only the rows of the loads that landed those versions. Building every view over
    the whole landing would cost what the warehouse holds, not what the load asks.
    """
    layout = views.read_layout(parquet_root)
    if not {"fetch_log", "loads", "runs"} <= layout.tables():
        return {}  # no committed run yet
    root = parquet_root.as_posix()
    sources = {table: views.source_sql(root, table, layout.paths(table)) for table in ("fetch_log", "loads", "runs")}
    # A (load, session) pair is in the compacted files or in its load's parts, never both: one window for all.
    versions = _LANDED_VERSIONS.format(current_versions=views.CURRENT_VERSIONS_SQL, newest=views.FETCH_LOG_NEWEST,
                                       fetch_log=sources["fetch_log"], loads=sources["loads"])
    con = duckdb.connect()
    try:
        objstore.register(con, parquet_root)
        con.execute(versions, {"sessions": list(session_ids)})
        load_ids = [row[0] for row in con.execute("SELECT DISTINCT load_id FROM asked_versions").fetchall()]
        if not load_ids:
            return {}  # none of them has a current version: nothing to skip
        # literals, so that DuckDB skips the row groups of every other load by their statistics
        literals = ", ".join("'" + load_id.replace("'", "''") + "'" for load_id in load_ids)
        rows = con.execute(_LANDED_FINAL_RUNS.format(runs=sources["runs"], load_ids=literals),
                           {"final": list(FINAL_STATUSES)}).fetchall()
    finally:
        con.close()
    return {row[0]: (row[1], row[2]) for row in rows}
