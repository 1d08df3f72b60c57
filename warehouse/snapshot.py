"""The read-only snapshot `OUT/piper-bi.duckdb` that dashboards open instead of the load's database.

A DuckDB file has either one writer process or several read-only ones, never both. If dashboards
opened `piper.duckdb`, a scheduled load would fail while one is open, and a dashboard opening it in the
middle of a merge would wait or fail. So after every merge the load, still holding the database's lock
(no other process can write it), publishes a copy, and the cost of that publish follows what the load
changed, not the size of the database:

* Two standby copies live in `OUT/_bi/` (`a.duckdb`, `b.duckdb`); `piper-bi.duckdb` is a hard link
  to the one published last. A publish writes the *other* one, never the file readers are sent to.
* That standby is attached read-write by the writer's DuckDB. DuckDB takes an exclusive lock to do so,
  which it cannot get while any other process has the file open read-only: so a failed attach says
  that a dashboard still reads it (one that opened the snapshot two publishes ago), and a successful
  one that nobody does. On Linux, this process's own open files are checked too (POSIX locks do not
  conflict within one process).
* The standby is brought up to date with only the loads of `loads` it lacks, in one transaction, by
  the kinds of `schemas/tables.py`. `DATA_TABLES`: the standby's run versions (run_id, session_id,
  _load_id of its `runs`) sharing a run_id or session_id with those loads' `fetch_log` 'loaded' rows
  and no longer current in the database lose their rows (a merge makes no other version stale, see
  warehouse/merge.py), and the database's rows of those loads, all current, are inserted; what did
  not change is neither read nor written again. `DIMENSION_KEYS`: every key whose rows now come from
  those loads gets the database's rows. `HISTORY_TABLES` and `loads`: those loads' rows. `token_prices`
  is replaced whole (a handful of rows); the views are recreated from the writer's own SQL when their
  text differs. The new rows are selected by one `_load_id = ?` per load (a UNION ALL), which DuckDB
  answers from the row groups of that load alone (rows are stored in load order; an IN list would be
  evaluated on every row), and inserted without a DELETE first: the standby holds no row of a load its
  `loads` lacks (checked by a count, which reads one column of those row groups; a standby that does is
  replaced whole). Then CHECKPOINT and DETACH, so that the file alone holds every row (a reader of
  `piper-bi.duckdb` never sees a WAL named `a.duckdb.wal`).
* Publishing is a hard link to a temporary name renamed over `piper-bi.duckdb`: atomic, so a new
  connection opens the previous complete snapshot or the new one; a connection opened earlier keeps the
  file it opened, which no publish writes while it is published or held.

A database smaller than `COPY_BELOW_BYTES` and already in the storage format wanted is copied whole
instead: below that size a byte copy (one sequential write) takes less time than updating a standby
(an ATTACH, a transaction, a CHECKPOINT), and it leaves nothing behind for the other standby to catch
up with (docs/bi.md has the measurement). A database in another format is not converted every load:
its standbys are converted once and then updated.

When the standby cannot be updated (it does not exist yet, cannot be opened, has an older table
layout, holds loads the database does not, or a reader holds it) it is replaced by a whole copy of the
database, taken right after the CHECKPOINT of `analytics.install` (the file alone holds every committed
row); an INFO log line says why. A kill at any point leaves the published file untouched, and the
standby either as it was or with the new loads: its `loads` table always says what it holds.

Why not the alternatives: a reflink (`copy_file_range` on XFS or btrfs) is cheap only on file
systems that share extents, and ext4 or overlayfs (most containers) would still copy every byte; a
copy of the changed pages would need DuckDB's block layout. Two standbys cost twice the database's
size on disk (docs/bi.md), for a publish that writes what the load changed.

On Windows a file held open cannot be replaced: the publish is then skipped with a warning and the
load still succeeds; the next load publishes again.

Older DuckDB readers: the standbys are kept in the storage format of the `storage_version` the load
was given (`store.DEFAULT_STORAGE_VERSION`). A standby in another format is replaced by a whole copy,
which is the database's bytes when the database is in that format, else a `COPY FROM DATABASE` into
a new file created in it (a database created by a piper-etl that wrote DuckDB's newest format).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from contextlib import suppress
from pathlib import Path

import duckdb

from schemas.tables import DATA_TABLES, DIMENSION_KEYS, HISTORY_TABLES
from warehouse import files, store
from warehouse.crash import crash_point
from warehouse.ddl import quote_ident

SNAPSHOT_FILE = "piper-bi.duckdb"
STANDBY_DIR = "_bi"
STANDBY_FILES = ("a.duckdb", "b.duckdb")
STANDBY_CATALOG = "piper_bi"
CONVERTED_CATALOG = "piper_bi_converted"
_COPY_BUFFER = 1 << 20
COPY_BELOW_BYTES = 100 * 2**20
"""Below this size of `piper.duckdb` a publish copies the database whole (module docstring)."""
COPY_BELOW_ENV = "PIPER_ETL_SNAPSHOT_COPY_BELOW"
"""Overrides `COPY_BELOW_BYTES` (bytes): tests set 0 to update standbys of tiny databases too."""
logger = logging.getLogger(__name__)


class SnapshotError(RuntimeError):
    """The database cannot be copied whole: it has a write-ahead log (no CHECKPOINT since the last write)."""


def snapshot_path(out_dir: Path) -> Path:
    return out_dir / SNAPSHOT_FILE


def standby_paths(out_dir: Path) -> list[Path]:
    return [out_dir / STANDBY_DIR / name for name in STANDBY_FILES]


def publish(
    con: duckdb.DuckDBPyConnection, out_dir: Path, views_sql: str, *,
    storage_version: str = store.DEFAULT_STORAGE_VERSION, copy_below: int | None = None,
) -> Path | None:
    """Bring the standby up to date from the writer `con` and publish it; None when Windows refused.

    `con`: a cursor of the writer connection that nothing else uses meanwhile (its `USE` changes);
    the database must have just been CHECKPOINTed (a whole copy may be needed). `views_sql`: the
    CREATE OR REPLACE VIEW statements the writer ran, run again inside the standby. `storage_version`:
    the DuckDB storage version the snapshot is kept in (module docstring). `copy_below`: the size in
    bytes below which the database is copied whole (default: `copy_below_bytes()`).
    """
    con.execute(f"USE {store.CATALOG}")
    target = snapshot_path(out_dir)
    standby_dir = out_dir / STANDBY_DIR
    for stale in [*target.parent.glob(f".{target.name}.*.tmp"), *standby_dir.glob(".*.tmp"),
                  *standby_dir.glob(".*.tmp.wal")]:
        stale.unlink(missing_ok=True)  # left by a killed publish (one at a time: the writer's lock)
    standby = _standby_to_write(target, standby_paths(out_dir))
    wanted = store.storage_format_of(storage_version)
    database = out_dir / store.DATABASE_FILE
    below = copy_below_bytes() if copy_below is None else copy_below
    size = database.stat().st_size
    if size < below and store.storage_format(con, store.CATALOG) == wanted:  # a byte copy, not a conversion
        why: str | None = f"the database ({size / 2**20:.0f} MB) is smaller than {below / 2**20:.0f} MB"
    else:
        why = _update_standby(con, standby, views_sql, wanted)
    if why is not None:
        logger.info("BI snapshot: copying the whole database into %s because %s", standby, why)
        _wal(standby).unlink(missing_ok=True)  # would be replayed into the new copy otherwise
        if store.storage_format(con, store.CATALOG) == wanted:
            publish_snapshot(database, standby)
        else:
            _copy_converted(con, standby, storage_version)
    crash_point("snapshot-updated")
    return _link(standby, target)


def copy_below_bytes() -> int:
    """`COPY_BELOW_BYTES`, or the bytes `PIPER_ETL_SNAPSHOT_COPY_BELOW` names (a publish never fails over it)."""
    given = os.environ.get(COPY_BELOW_ENV, "").strip()
    if not given:
        return COPY_BELOW_BYTES
    try:
        return int(given)
    except ValueError:
        logger.warning("%s must be a number of bytes, not %r: using %d", COPY_BELOW_ENV, given, COPY_BELOW_BYTES)
        return COPY_BELOW_BYTES


def publish_snapshot(database: Path, target: Path) -> Path | None:
    """Copy `database` to `target` atomically; returns `target`, or None when Windows refused the rename.

    The caller must hold the database open (its lock keeps other writers out) and have just run a
    CHECKPOINT, so that the file alone holds every committed row.
    """
    wal = _wal(database)
    if wal.exists() and wal.stat().st_size > 0:
        raise SnapshotError(f"{database} has a write-ahead log ({wal.name}): run CHECKPOINT before publishing")
    for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by a killed publish (one at a time)
        stale.unlink(missing_ok=True)
    with open(database, "rb") as source:
        try:
            return files.write_atomically(target, lambda sink: shutil.copyfileobj(source, sink, _COPY_BUFFER))
        except PermissionError:
            if os.name != "nt":
                raise
            logger.warning("%s is held open by a reader that Windows will not let go of; not replaced", target)
            return None


def _copy_converted(con: duckdb.DuckDBPyConnection, standby: Path, storage_version: str) -> None:
    """Replace `standby` atomically by a copy of the database written in the format of `storage_version`."""
    logger.info("BI snapshot: the database is in DuckDB storage format %s; writing %s in that of %s instead of "
                "copying its bytes", store.storage_format(con, store.CATALOG), standby.name, storage_version)
    tmp = files.temporary_name(standby)
    literal = str(tmp).replace("'", "''")
    standby.parent.mkdir(parents=True, exist_ok=True)
    try:
        con.execute(f"ATTACH '{literal}' AS {CONVERTED_CATALOG} ({store.attach_options(tmp, storage_version)})")
        try:
            con.execute(f"COPY FROM DATABASE {store.CATALOG} TO {CONVERTED_CATALOG}")
        finally:
            con.execute(f"DETACH {CONVERTED_CATALOG}")  # checkpoints: the file alone holds every row
        with open(tmp, "rb+") as copied:
            os.fsync(copied.fileno())
        try:
            os.replace(tmp, standby)
        except PermissionError:  # as `publish_snapshot`: Windows keeps a file a reader holds
            if os.name != "nt":
                raise
            logger.warning("%s is held open by a reader that Windows will not let go of; not replaced", standby)
            return
        files.fsync_folder(standby.parent)
    finally:
        tmp.unlink(missing_ok=True)
        _wal(tmp).unlink(missing_ok=True)


def _standby_to_write(target: Path, standbys: list[Path]) -> Path:
    """The standby `target` is not a link to; of two such (an older layout of the folder), one that exists."""
    published = _identity(target)
    free = [path for path in standbys if published is None or _identity(path) != published]
    return next((path for path in free if path.exists()), free[0])


def _update_standby(con: duckdb.DuckDBPyConnection, standby: Path, views_sql: str, storage: str) -> str | None:
    """Bring `standby` up to date with the database's committed loads; None when done, else why not.

    `storage`: the storage format (`store.storage_format`) the standby must be in.
    """
    if not standby.exists():
        return "there is no standby copy yet"
    if _held_in_this_process(standby):
        return "a reader in this process has it open"
    literal = str(standby).replace("'", "''")
    try:
        con.execute(f"ATTACH '{literal}' AS {STANDBY_CATALOG} (ROW_GROUP_SIZE {store.ROW_GROUP_SIZE})")
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
            return "a reader still has it open"
        return f"it cannot be opened ({exc})"
    try:
        found = store.storage_format(con, STANDBY_CATALOG)
        why = f"it is in DuckDB storage format {found}, not {storage}" if found != storage else None
        why = why or _catch_up(con, views_sql)
    except duckdb.Error as exc:  # a whole copy is always right; the cause goes to the log line
        why = f"updating it failed ({exc})"
    finally:
        con.execute(f"USE {store.CATALOG}")
        con.execute(f"DETACH {STANDBY_CATALOG}")
    wal = _wal(standby)
    if why is None and wal.exists() and wal.stat().st_size > 0:
        return f"its write-ahead log {wal.name} was left after the checkpoint"
    return why


def _catch_up(con: duckdb.DuckDBPyConnection, views_sql: str) -> str | None:
    """Add to the attached standby the loads it lacks (module docstring); None when done, else why not."""
    if _layout(con, STANDBY_CATALOG) != _layout(con, store.CATALOG):
        return "its table layout differs from the database's"
    loads = {row[0] for row in con.execute(f"SELECT load_id FROM {STANDBY_CATALOG}.loads").fetchall()}
    if loads - {row[0] for row in con.execute(f"SELECT load_id FROM {store.CATALOG}.loads").fetchall()}:
        return "it holds loads the database does not"
    missing = sorted({row[0] for row in con.execute(f"SELECT load_id FROM {store.CATALOG}.loads").fetchall()} - loads)
    # The standby holds no row of a load its `loads` table lacks: every file it is (a byte copy of the
    # database, a conversion, an update by this function) got each load's rows in the transaction that
    # added the load's `loads` row (warehouse/merge.py: nothing else writes the database's tables). So
    # the new loads' rows are inserted without deleting first; `_rows_of_loads` checks that cheaply.
    db, bi = store.CATALOG, STANDBY_CATALOG
    if _rows_of_loads(con, missing):
        return "it holds rows of loads its loads table does not name"
    con.execute("CREATE OR REPLACE TEMP TABLE snapshot_touched AS "
                + _each_load(f"SELECT run_id, session_id FROM {db}.fetch_log WHERE outcome = 'loaded' AND", "load_id",
                             len(missing), union="UNION"), missing)
    touched = ("(run_id IN (SELECT run_id FROM temp.snapshot_touched) "
               "OR session_id IN (SELECT session_id FROM temp.snapshot_touched))")
    # The standby's run versions that the missing loads made no longer current (every row of a data
    # table belongs to the version of its runs row: same run_id, session_id and _load_id): those of the
    # standby's versions sharing a run or session with them that the database no longer holds. The
    # database is asked by the candidates' load ids, one `=` each: only those loads' row groups are read.
    con.execute(f"""CREATE OR REPLACE TEMP TABLE snapshot_stale AS
        SELECT run_id, session_id, _load_id FROM {bi}.runs WHERE {touched}""")
    candidate_loads = [row[0] for row in con.execute("SELECT DISTINCT _load_id FROM temp.snapshot_stale").fetchall()]
    for chunk in _chunks(candidate_loads):
        con.execute(f"""DELETE FROM temp.snapshot_stale s
            USING ({_each_load(f"SELECT run_id, session_id, _load_id FROM {db}.runs WHERE", "_load_id", len(chunk))}) r
            WHERE r.run_id = s.run_id AND r.session_id = s.session_id AND r._load_id = s._load_id""", chunk)
    stale_loads = [row[0] for row in con.execute("SELECT DISTINCT _load_id FROM temp.snapshot_stale").fetchall()]
    con.execute("BEGIN TRANSACTION")
    try:
        for table in DATA_TABLES:
            t = quote_ident(table)
            for load in stale_loads:  # `_load_id = ?` on both sides: DuckDB reads only that load's row groups
                con.execute(f"DELETE FROM {bi}.{t} USING temp.snapshot_stale s WHERE {t}._load_id = $load "
                            f"AND s._load_id = $load AND {t}.run_id = s.run_id AND {t}.session_id = s.session_id",
                            {"load": load})
            _insert_loads(con, table, "_load_id", missing)  # the new loads' rows, all current
        for table, key in DIMENSION_KEYS.items():
            t, k = quote_ident(table), quote_ident(key)
            for chunk in _chunks(missing):  # a key's current rows are those of one load: a new one replaces them all
                con.execute(f"DELETE FROM {bi}.{t} WHERE {k} IN "
                            f"({_each_load(f'SELECT {k} FROM {db}.{t} WHERE', '_load_id', len(chunk))})", chunk)
            _insert_loads(con, table, "_load_id", missing)
        for table in (*HISTORY_TABLES, "loads"):
            _insert_loads(con, table, "load_id", missing)
        con.execute(f"DELETE FROM {bi}.token_prices")
        con.execute(f"INSERT INTO {bi}.token_prices BY NAME SELECT * FROM {db}.token_prices")
        if _views(con, bi) != _views(con, db):  # unchanged views are not rewritten (nor checkpointed)
            con.execute(f"USE {STANDBY_CATALOG}")  # the views' unqualified names bind to the standby's tables
            con.execute(views_sql)
        crash_point("snapshot-updating")
        con.execute("COMMIT")
    except BaseException:
        with suppress(duckdb.Error):  # a COMMIT that failed has ended the transaction already
            con.execute("ROLLBACK")
        raise
    finally:
        con.execute("DROP TABLE IF EXISTS temp.snapshot_stale")
        con.execute("DROP TABLE IF EXISTS temp.snapshot_touched")
    con.execute(f"CHECKPOINT {STANDBY_CATALOG}")
    return None


LOADS_PER_STATEMENT = 32
"""How many loads one statement of `_catch_up` names (one UNION ALL branch each); more take more statements."""


def _each_load(select: str, column: str, count: int, *, union: str = "UNION ALL") -> str:
    """`select`, which ends in WHERE or AND, once per load as `column = ?`, joined by `union`.

    DuckDB skips the row groups of other loads by their min/max of `column` (rows are stored in load
    order) for `column = ?`, but not for `column IN (?, ?)` or an OR of two `=` (DuckDB 2.0.1: an
    "optional" filter, evaluated on every row of the table); so one branch per load.
    """
    return f" {union} ".join(f"{select} {column} = ?" for _ in range(count)) if count else f"{select} false"


def _chunks(loads: list[str]) -> list[list[str]]:
    return [loads[i : i + LOADS_PER_STATEMENT] for i in range(0, len(loads), LOADS_PER_STATEMENT)]


def _insert_loads(con: duckdb.DuckDBPyConnection, table: str, column: str, loads: list[str]) -> None:
    """Insert into the standby's `table` the database's rows of `loads` (`column` names their load)."""
    t = quote_ident(table)
    for chunk in _chunks(loads):
        con.execute(f"INSERT INTO {STANDBY_CATALOG}.{t} BY NAME "
                    + _each_load(f"SELECT * FROM {store.CATALOG}.{t} WHERE", column, len(chunk)), chunk)


def _rows_of_loads(con: duckdb.DuckDBPyConnection, loads: list[str]) -> int:
    """How many rows the standby holds of `loads` in the tables a load adds rows to (0 by construction)."""
    found = 0
    tables = [*((t, "_load_id") for t in (*DATA_TABLES, *DIMENSION_KEYS)),
              *((t, "load_id") for t in (*HISTORY_TABLES, "loads"))]
    for chunk in _chunks(loads):
        counts = " + ".join(f"({_each_load(f'SELECT count(*) FROM {STANDBY_CATALOG}.{quote_ident(t)} WHERE', c, 1)})"
                            for t, c in tables for _ in chunk)
        found += _count(con, f"SELECT {counts}", [load for _ in tables for load in chunk])
    return found


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[str] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row else 0


def _views(con: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[object, ...]]:
    return con.execute("SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal "
                       "ORDER BY 1", [catalog]).fetchall()


def _layout(con: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[object, ...]]:
    """Every table's columns, in order, with their types."""
    return con.execute(
        "SELECT c.table_name, c.column_index, c.column_name, c.data_type, c.is_nullable "
        "FROM duckdb_columns() c JOIN duckdb_tables() t USING (table_oid) "
        "WHERE c.database_name = ? AND c.schema_name = 'main' ORDER BY 1, 2",
        [catalog],
    ).fetchall()


def _link(standby: Path, target: Path) -> Path | None:
    """Make `target` a hard link to `standby`, atomically (a copy where the file system has no hard links)."""
    tmp = files.temporary_name(target)
    try:
        os.link(standby, tmp)
    except OSError as exc:
        logger.info("BI snapshot: copying %s to %s because it cannot be hard-linked (%s)", standby, target, exc)
        return publish_snapshot(standby, target)
    try:
        crash_point("snapshot-linked")
        os.replace(tmp, target)
    except PermissionError:
        if os.name != "nt":
            raise
        logger.warning("%s is held open by a reader that Windows will not let go of; not replaced", target)
        return None
    finally:
        tmp.unlink(missing_ok=True)
    files.fsync_folder(target.parent)
    return target


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def _held_in_this_process(path: Path) -> bool:
    """Whether this process has `path` open (Linux: /proc/self/fd; elsewhere unknown, so False)."""
    if not sys.platform.startswith("linux"):
        return False
    wanted = _identity(path)
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            stat = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) == wanted:
            return True
    return False


def _wal(database: Path) -> Path:
    return database.with_name(database.name + ".wal")
